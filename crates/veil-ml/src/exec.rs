//! The plaintext executor: evaluates a [`Graph`] on one sample in `f64`.
//!
//! It is the reference the encrypted backends are tested against, and what a model owner
//! runs to see what a compiled model should output.

use crate::error::{MlError, Result};
use crate::ir::{Aggregate, Conv2d, Graph, Op, Pool2d, PostTransform, TreeEnsemble, TreeNode};

impl Graph {
    /// Evaluates the graph on one sample (row-major, the input's per-sample shape); returns
    /// each output's values in order.
    pub fn run(&self, input: &[f64]) -> Result<Vec<Vec<f64>>> {
        let slots = self.execute(input, false)?;
        self.outputs()
            .iter()
            .map(|&o| {
                slots[o]
                    .clone()
                    .ok_or(MlError::Internal("output not computed"))
            })
            .collect()
    }

    /// Evaluates the graph on one sample and returns **every** value (indexed by
    /// [`ValueId`](crate::ir::ValueId)): what calibration measures.
    pub fn run_all(&self, input: &[f64]) -> Result<Vec<Vec<f64>>> {
        self.execute(input, true)?
            .into_iter()
            .map(|v| v.ok_or(MlError::Internal("a value is not computed")))
            .collect()
    }

    /// The values after evaluation; those nobody reads any more are dropped unless `keep`.
    fn execute(&self, input: &[f64], keep: bool) -> Result<Vec<Option<Vec<f64>>>> {
        let expected = self.input().shape.iter().product::<usize>();
        if input.len() != expected {
            return Err(MlError::Input {
                reason: format!(
                    "`{}` has shape {:?} ({expected} values), given {} values",
                    self.input().name,
                    self.input().shape,
                    input.len()
                ),
            });
        }
        let mut slots: Vec<Option<Vec<f64>>> = vec![None; self.values().len()];
        slots[self.input_id()] = Some(input.to_vec());
        let uses = self.use_counts();
        let mut remaining = uses.clone();
        for node in self.nodes() {
            let mut args = Vec::with_capacity(node.inputs.len());
            for &i in &node.inputs {
                let v = slots
                    .get(i)
                    .and_then(|s| s.as_deref())
                    .ok_or(MlError::Internal("value read before it is computed"))?;
                args.push(v);
            }
            let in_shape = self
                .value(node.inputs[0])
                .map(|v| v.shape.as_slice())
                .ok_or(MlError::Internal("node input is not a value"))?;
            let out = eval(&node.op, in_shape, &args)?;
            // Drop values nobody reads any more.
            for &i in &node.inputs {
                remaining[i] -= 1;
                if remaining[i] == 0 && !keep && !self.outputs().contains(&i) {
                    slots[i] = None;
                }
            }
            slots[node.output] = Some(out);
        }
        Ok(slots)
    }
}

/// Applies one operator to its arguments (`shape` is the first argument's shape).
pub(crate) fn eval(op: &Op, shape: &[usize], args: &[&[f64]]) -> Result<Vec<f64>> {
    let x = args[0];
    Ok(match op {
        Op::Linear { weight, bias } => {
            let inn = x.len();
            bias.iter()
                .enumerate()
                .map(|(o, b)| {
                    let row = &weight.data()[o * inn..(o + 1) * inn];
                    row.iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + b
                })
                .collect()
        }
        Op::Conv2d(c) => conv2d(c, shape, x),
        Op::Affine { mul, add } => x
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                v * mul.get(k).copied().unwrap_or(1.0) + add.get(k).copied().unwrap_or(0.0)
            })
            .collect(),
        Op::Add => x.iter().zip(args[1]).map(|(a, b)| a + b).collect(),
        Op::Sub => x.iter().zip(args[1]).map(|(a, b)| a - b).collect(),
        Op::Mul => x.iter().zip(args[1]).map(|(a, b)| a * b).collect(),
        Op::Square => x.iter().map(|v| v * v).collect(),
        Op::AveragePool(p) => avg_pool(p, shape, x),
        Op::MaxPool(p) => pool_windows(p, shape)
            .iter()
            .map(|w| w.iter().fold(f64::NEG_INFINITY, |m, &k| m.max(x[k])))
            .collect(),
        Op::GlobalAveragePool => {
            let c = shape.first().copied().unwrap_or(1).max(1);
            let plane = x.len() / c;
            x.chunks(plane.max(1))
                .map(|ch| ch.iter().sum::<f64>() / plane as f64)
                .collect()
        }
        Op::Reshape { .. } => x.to_vec(),
        Op::Transpose { perm } => transpose(shape, perm, x),
        Op::Activation(a) => x.iter().map(|&v| a.apply(v)).collect(),
        Op::TreeEnsemble(t) => tree_ensemble(t, x)?,
        Op::Softmax => post_transform(PostTransform::Softmax, x.to_vec()),
        Op::ArgMax { labels } => {
            let mut best = 0;
            for (i, &v) in x.iter().enumerate() {
                if v > x[best] {
                    best = i;
                }
            }
            vec![labels.get(best).copied().unwrap_or(0) as f64]
        }
    })
}

fn conv2d(c: &Conv2d, shape: &[usize], x: &[f64]) -> Vec<f64> {
    let (ci, h, w) = (shape[0], shape[1], shape[2]);
    let ws = c.weight.shape();
    let (co, cig, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let [sh, sw] = c.stride;
    let [dh, dw] = c.dilation;
    let (pt, pl) = (c.pads[0], c.pads[1]);
    let oh = (h + c.pads[0] + c.pads[2] - (dh * (kh - 1) + 1)) / sh + 1;
    let ow = (w + c.pads[1] + c.pads[3] - (dw * (kw - 1) + 1)) / sw + 1;
    let cog = co / c.groups;
    let wd = c.weight.data();
    let mut out = vec![0.0; co * oh * ow];
    for o in 0..co {
        let g = o / cog;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = c.bias[o];
                for k in 0..cig {
                    let ic = g * cig + k;
                    debug_assert!(ic < ci);
                    for ky in 0..kh {
                        let iy = (oy * sh + ky * dh) as isize - pt as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * sw + kx * dw) as isize - pl as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            acc += wd[((o * cig + k) * kh + ky) * kw + kx]
                                * x[(ic * h + iy as usize) * w + ix as usize];
                        }
                    }
                }
                out[(o * oh + oy) * ow + ox] = acc;
            }
        }
    }
    out
}

fn avg_pool(p: &Pool2d, shape: &[usize], x: &[f64]) -> Vec<f64> {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let (pt, pl) = (p.pads[0], p.pads[1]);
    let oh = (h + p.pads[0] + p.pads[2] - kh) / sh + 1;
    let ow = (w + p.pads[1] + p.pads[3] - kw) / sw + 1;
    let mut out = vec![0.0; c * oh * ow];
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut acc, mut count) = (0.0, 0usize);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = (oy * sh + ky) as isize - pt as isize;
                        let ix = (ox * sw + kx) as isize - pl as isize;
                        if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                            acc += x[(ch * h + iy as usize) * w + ix as usize];
                            count += 1;
                        }
                    }
                }
                let div = if p.count_include_pad { kh * kw } else { count };
                out[(ch * oh + oy) * ow + ox] = if div == 0 { 0.0 } else { acc / div as f64 };
            }
        }
    }
    out
}

/// The input positions of each output of a pooling (padding left out), in output order
/// `[C, H', W']`.
pub(crate) fn pool_windows(p: &Pool2d, shape: &[usize]) -> Vec<Vec<usize>> {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let oh = (h + p.pads[0] + p.pads[2] - kh) / sh + 1;
    let ow = (w + p.pads[1] + p.pads[3] - kw) / sw + 1;
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut win = Vec::with_capacity(kh * kw);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = (oy * sh + ky).checked_sub(p.pads[0]);
                        let ix = (ox * sw + kx).checked_sub(p.pads[1]);
                        if let (Some(iy), Some(ix)) = (iy, ix) {
                            if iy < h && ix < w {
                                win.push((ch * h + iy) * w + ix);
                            }
                        }
                    }
                }
                out.push(win);
            }
        }
    }
    out
}

fn transpose(shape: &[usize], perm: &[usize], x: &[f64]) -> Vec<f64> {
    let rank = shape.len();
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    // Strides of the input, read in output-axis order.
    let mut in_strides = vec![1usize; rank];
    for a in (0..rank.saturating_sub(1)).rev() {
        in_strides[a] = in_strides[a + 1] * shape[a + 1];
    }
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut out = Vec::with_capacity(x.len());
    let mut idx = vec![0usize; rank];
    for _ in 0..x.len() {
        let src: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(x[src]);
        for a in (0..rank).rev() {
            idx[a] += 1;
            if idx[a] < out_shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    out
}

/// Scores of a tree ensemble on one sample.
pub(crate) fn tree_ensemble(t: &TreeEnsemble, x: &[f64]) -> Result<Vec<f64>> {
    let mut scores = vec![0.0; t.n_targets];
    for tree in &t.trees {
        let mut at = 0usize;
        // Children have larger indices than parents, so this walk is at most |nodes| long.
        for _ in 0..=tree.nodes.len() {
            match tree.nodes.get(at) {
                Some(TreeNode::Branch {
                    feature,
                    threshold,
                    mode,
                    true_child,
                    false_child,
                    missing_goes_true,
                }) => {
                    let v = x[*feature];
                    let go_true = if v.is_nan() {
                        *missing_goes_true
                    } else {
                        mode.holds(v, *threshold)
                    };
                    at = if go_true { *true_child } else { *false_child };
                }
                Some(TreeNode::Leaf { weights }) => {
                    for &(k, w) in weights {
                        scores[k] += w;
                    }
                    break;
                }
                None => return Err(MlError::Internal("tree walk left the tree")),
            }
        }
    }
    if t.aggregate == Aggregate::Average && !t.trees.is_empty() {
        for s in &mut scores {
            *s /= t.trees.len() as f64;
        }
    }
    for (s, b) in scores.iter_mut().zip(&t.base_values) {
        *s += b;
    }
    Ok(post_transform(t.post_transform, scores))
}

fn post_transform(p: PostTransform, mut s: Vec<f64>) -> Vec<f64> {
    match p {
        PostTransform::None => s,
        PostTransform::Logistic => s.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect(),
        PostTransform::Softmax | PostTransform::SoftmaxZero => {
            let zero = p == PostTransform::SoftmaxZero;
            let max = s
                .iter()
                .filter(|&&v| !(zero && v == 0.0))
                .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0.0;
            for v in &mut s {
                if zero && *v == 0.0 {
                    continue;
                }
                *v = (*v - max).exp();
                sum += *v;
            }
            if sum > 0.0 {
                for v in &mut s {
                    *v /= sum;
                }
            }
            s
        }
    }
}
