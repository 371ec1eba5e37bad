//! Tree ensembles under CKKS: a forest as a soft, neural-network-shaped circuit.
//!
//! Every branch `x_f ≤ t` becomes a **soft decision** `σ_k = sigmoid(β·d_k)` of the signed,
//! normalized distance `d_k = ±(x_f − t)/R_f ∈ [-1, 1]` (positive when the true child is
//! taken; `R_f` is the largest distance from `t` to the end of feature `f`'s declared or
//! propagated input interval), evaluated as a Chebyshev polynomial. Every leaf's weight is
//! the product of the decisions on its path (`σ_k` or `1 − σ_k`), computed as a balanced
//! product tree, and the scores are the leaf values weighted by them — the "neural random
//! forest" shape of cryptotree, with products in place of a second activation.
//!
//! The four encrypted steps: an affine map (one output per branch), the sigmoid polynomial,
//! the leaf products ([`Step::Leaves`]) and an affine map to the scores. Depth:
//! `1 + ⌈log2(degree + 1)⌉ + ⌈log2(longest path)⌉ + 1`.
//!
//! **The soft decision is the approximation.** A sample whose feature lies close to a
//! threshold (relative to `R_f/β`) splits its weight between both children; the sharpness
//! `β` is the largest for which a polynomial of degree at most
//! [`CompileOptions::max_activation_degree`](crate::he::CompileOptions::max_activation_degree)
//! stays within [`CompileOptions::activation_precision`](crate::he::CompileOptions::activation_precision)
//! of the sigmoid on `[-β, β]`. Products need each decision in its own ciphertext, so forests
//! run with [`Packing::Batch`](crate::he::Packing::Batch) only.

use crate::approx::PolyApprox;
use crate::error::{MlError, Result};
use crate::he::Step;
use crate::ir::{Activation, Aggregate, BranchMode, TreeEnsemble, TreeNode};

/// A leaf's path: (decision index, whether the true child is taken) from the root.
type Path = Vec<(usize, bool)>;

/// The sharpness searched first, and the factor it shrinks by until a polynomial fits.
const BETA_START: f64 = 64.0;
const BETA_SHRINK: f64 = 0.85;
/// Largest noise amplification (ℓ2 norm of the power-basis coefficients) accepted: every
/// factor of 2 costs a bit of scale on every prime.
const MAX_AMPLIFICATION: f64 = 256.0;

/// The forest's four steps, for inputs in the per-feature intervals `iv`.
pub(crate) fn expand(
    node: &str,
    forest: &TreeEnsemble,
    iv: &[(f64, f64)],
    precision: f64,
    max_degree: usize,
) -> Result<Vec<Step>> {
    let unsupported = |reason: String| MlError::UnsupportedUse {
        node: node.to_string(),
        op: "TreeEnsemble".into(),
        reason,
    };
    if iv.len() != forest.n_features {
        return Err(MlError::Internal("forest input length"));
    }
    // Branches (feature, threshold, sign) and leaves (path, weights).
    let mut branches: Vec<(usize, f64, f64)> = Vec::new();
    let mut leaves: Vec<(Path, Vec<(usize, f64)>)> = Vec::new();
    let mut constant = vec![0.0; forest.n_targets];
    for tree in &forest.trees {
        // (node index, path so far); children come after parents, so this terminates.
        let mut stack: Vec<(usize, Path)> = vec![(0, Vec::new())];
        while let Some((at, path)) = stack.pop() {
            match tree.nodes.get(at) {
                Some(TreeNode::Branch {
                    feature,
                    threshold,
                    mode,
                    true_child,
                    false_child,
                    ..
                }) => {
                    // d > 0 ⇔ the true child.
                    let sign =
                        match mode {
                            BranchMode::Leq | BranchMode::Lt => -1.0,
                            BranchMode::Geq | BranchMode::Gt => 1.0,
                            BranchMode::Eq | BranchMode::Neq => return Err(unsupported(
                                "equality branches (BRANCH_EQ/NEQ) have no smooth soft decision"
                                    .into(),
                            )),
                        };
                    if !threshold.is_finite() || *feature >= iv.len() {
                        return Err(unsupported(
                            "a branch with a bad threshold or feature".into(),
                        ));
                    }
                    let k = branches.len();
                    branches.push((*feature, *threshold, sign));
                    let mut t = path.clone();
                    t.push((k, true));
                    let mut f = path;
                    f.push((k, false));
                    if *true_child <= at || *false_child <= at {
                        return Err(MlError::Internal("a child before its parent"));
                    }
                    stack.push((*true_child, t));
                    stack.push((*false_child, f));
                }
                Some(TreeNode::Leaf { weights }) => {
                    if path.is_empty() {
                        // A tree that is one leaf adds a constant.
                        for &(j, w) in weights {
                            constant[j] += w;
                        }
                    } else {
                        leaves.push((path, weights.clone()));
                    }
                }
                None => return Err(MlError::Internal("a child outside its tree")),
            }
        }
    }
    if branches.is_empty() {
        return Err(unsupported("the ensemble has no branch".into()));
    }
    // The sharpest sigmoid a polynomial of the allowed degree follows within the precision.
    let mut beta = BETA_START;
    let approx = loop {
        match PolyApprox::for_precision(
            Activation::Sigmoid,
            node,
            -beta,
            beta,
            precision,
            max_degree,
        ) {
            Ok(a) if a.coefficient_norm() <= MAX_AMPLIFICATION => break a,
            Err(e) if beta < 1.0 => return Err(e),
            Ok(_) if beta < 1.0 => {
                return Err(MlError::Internal(
                    "no sigmoid polynomial of small coefficients",
                ))
            }
            Ok(_) | Err(_) => beta *= BETA_SHRINK,
        }
    };
    // Comparisons: d_k = sign·(x_f − t)/R_f, then the polynomial's input map (β folded in:
    // the polynomial reads β·d mapped to [-1, 1], i.e. exactly d).
    let (f_map, o_map) = approx.input_map();
    let mut rows = vec![vec![0.0; branches.len()]; forest.n_features];
    let mut bias = vec![0.0; branches.len()];
    for (k, &(f, t, sign)) in branches.iter().enumerate() {
        let (lo, hi) = iv[f];
        let r = (hi - t).abs().max((t - lo).abs()).max(1e-9);
        let a = sign / r * beta;
        rows[f][k] = a * f_map;
        bias[k] = -a * t * f_map + o_map;
    }
    let scale = match forest.aggregate {
        Aggregate::Average if !forest.trees.is_empty() => 1.0 / forest.trees.len() as f64,
        _ => 1.0,
    };
    let mut out_rows = vec![vec![0.0; forest.n_targets]; leaves.len()];
    for (l, (_, weights)) in leaves.iter().enumerate() {
        for &(j, w) in weights {
            out_rows[l][j] += w * scale;
        }
    }
    let out_bias: Vec<f64> = (0..forest.n_targets)
        .map(|j| constant[j] * scale + forest.base_values.get(j).copied().unwrap_or(0.0))
        .collect();
    Ok(vec![
        Step::Affine { rows, bias },
        Step::Polynomial(approx),
        Step::Leaves {
            paths: leaves.into_iter().map(|(p, _)| p).collect(),
        },
        Step::Affine {
            rows: out_rows,
            bias: out_bias,
        },
    ])
}

/// `Π (σ_k or 1 − σ_k)` over each path, in `f64`.
pub(crate) fn leaves_plain(paths: &[Vec<(usize, bool)>], s: &[f64]) -> Vec<f64> {
    paths
        .iter()
        .map(|p| {
            p.iter()
                .map(|&(k, pos)| if pos { s[k] } else { 1.0 - s[k] })
                .product()
        })
        .collect()
}
