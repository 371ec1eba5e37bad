//! An in-process [`Exchange`]: one thread per party and one for the dealer, connected by
//! channels. For tests and for running every party on one machine.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::Duration;

use crate::dealer::{Dealer, Request};
use crate::error::{MpcError, Result};
use crate::fixed::FixedPoint;
use crate::protocol::{Exchange, Party};

type DealerLink = (Sender<Request>, Receiver<Result<Vec<u64>>>);

/// A party's end of the in-memory network.
#[derive(Debug)]
pub struct MemoryExchange {
    id: usize,
    to: Vec<Option<Sender<Vec<u64>>>>,
    from: Vec<Option<Receiver<Vec<u64>>>>,
    dealer: Option<DealerLink>,
    timeout: Duration,
}

impl Exchange for MemoryExchange {
    fn id(&self) -> usize {
        self.id
    }

    fn parties(&self) -> usize {
        self.to.len()
    }

    fn exchange(&mut self, phase: &str, outgoing: Vec<Vec<u64>>) -> Result<Vec<Vec<u64>>> {
        let n = self.to.len();
        if outgoing.len() != n {
            return Err(MpcError::InvalidParameter(format!(
                "{} outgoing messages for {n} parties",
                outgoing.len()
            )));
        }
        // Every party sends to every other (possibly empty) so rounds stay in lock step.
        for (j, msg) in outgoing.into_iter().enumerate() {
            if let Some(tx) = &self.to[j] {
                tx.send(msg).map_err(|_| MpcError::PartyGone {
                    party: j,
                    phase: phase.into(),
                    why: "its channel is closed".into(),
                })?;
            }
        }
        let mut incoming = vec![Vec::new(); n];
        for (j, rx) in self.from.iter().enumerate() {
            if let Some(rx) = rx {
                incoming[j] = rx
                    .recv_timeout(self.timeout)
                    .map_err(|e| MpcError::PartyGone {
                        party: j,
                        phase: phase.into(),
                        why: match e {
                            RecvTimeoutError::Timeout => {
                                format!("no message within {:?}", self.timeout)
                            }
                            RecvTimeoutError::Disconnected => "it stopped".into(),
                        },
                    })?;
            }
        }
        Ok(incoming)
    }

    fn dealer_request(&mut self, request: &Request) -> Result<()> {
        let Some((tx, _)) = &self.dealer else {
            return Ok(());
        };
        tx.send(request.clone())
            .map_err(|_| MpcError::Dealer("the dealer stopped".into()))
    }

    fn dealer_correction(&mut self) -> Result<Option<Vec<u64>>> {
        let Some((_, rx)) = &self.dealer else {
            return Ok(None);
        };
        rx.recv_timeout(self.timeout)
            .map_err(|_| MpcError::Dealer("the dealer did not answer".into()))?
            .map(Some)
    }
}

/// Runs `program` as `n` parties in threads, with a dealer thread; returns each party's
/// result (in party order) or the first error.
pub fn run<T, F>(n: usize, fixed: FixedPoint, program: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(&mut Party<MemoryExchange>) -> Result<T> + Send + Sync + 'static,
{
    run_with_timeout(n, fixed, Duration::from_secs(30), program)
}

/// [`run`] with a receive timeout.
pub fn run_with_timeout<T, F>(
    n: usize,
    fixed: FixedPoint,
    timeout: Duration,
    program: F,
) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(&mut Party<MemoryExchange>) -> Result<T> + Send + Sync + 'static,
{
    let mut os = rand_core::OsRng;
    let mut rng = rand_core::TryRngCore::unwrap_mut(&mut os);
    let (mut dealer, seeds) = Dealer::new(n, &mut rng)?;
    let (to, from) = links(n);
    let (req_tx, req_rx) = channel::<Request>();
    let (cor_tx, cor_rx) = channel::<Result<Vec<u64>>>();
    let dealer_thread = thread::spawn(move || {
        while let Ok(req) = req_rx.recv() {
            if cor_tx.send(dealer.correction(&req)).is_err() {
                break;
            }
        }
    });
    let program = std::sync::Arc::new(program);
    let mut dealer_link = Some((req_tx, cor_rx));
    let mut handles = Vec::new();
    for (id, (to, from)) in to.into_iter().zip(from).enumerate() {
        let ex = MemoryExchange {
            id,
            to,
            from,
            dealer: if id == n - 1 {
                dealer_link.take()
            } else {
                None
            },
            timeout,
        };
        let seed = seeds[id].clone();
        let program = program.clone();
        handles.push(thread::spawn(move || {
            let mut party = Party::new(ex, &seed, fixed)?;
            program(&mut party)
        }));
    }
    let out = join(handles);
    let _ = dealer_thread.join();
    out
}

/// Channels between `n` parties: each party's senders to and receivers from the others.
#[allow(clippy::type_complexity, reason = "two tables of channel ends")]
fn links(
    n: usize,
) -> (
    Vec<Vec<Option<Sender<Vec<u64>>>>>,
    Vec<Vec<Option<Receiver<Vec<u64>>>>>,
) {
    let mut to: Vec<Vec<Option<Sender<Vec<u64>>>>> = (0..n).map(|_| vec![None; n]).collect();
    let mut from: Vec<Vec<Option<Receiver<Vec<u64>>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let (tx, rx) = channel();
                to[i][j] = Some(tx);
                from[j][i] = Some(rx);
            }
        }
    }
    (to, from)
}

/// Runs `program` on `n` in-memory exchanges (one thread each) **without a dealer**, for
/// protocols that need none (the three-party replicated family, [`crate::rss`]); returns
/// each party's result or the first error.
pub fn run_exchanges<T, F>(n: usize, timeout: Duration, program: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(MemoryExchange) -> Result<T> + Send + Sync + 'static,
{
    let (to, from) = links(n);
    let program = std::sync::Arc::new(program);
    let handles = to
        .into_iter()
        .zip(from)
        .enumerate()
        .map(|(id, (to, from))| {
            let ex = MemoryExchange {
                id,
                to,
                from,
                dealer: None,
                timeout,
            };
            let program = program.clone();
            thread::spawn(move || program(ex))
        })
        .collect();
    join(handles)
}

/// The parties' results in order, or the first error (a panic is reported as the party
/// gone).
fn join<T>(handles: Vec<thread::JoinHandle<Result<T>>>) -> Result<Vec<T>> {
    let mut results = Vec::new();
    let mut first_err = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(v)) => results.push(v),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(MpcError::PartyGone {
                    party: i,
                    phase: "run".into(),
                    why: "its thread panicked".into(),
                });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(results),
    }
}
