//! Workflow definitions: the model, and the parser that checks every rule at once.
//!
//! [`parse`] turns YAML (or JSON) text into a [`Workflow`] or into the full list of located
//! problems. The stages: load a located tree (`crate::located`), decode the document and each
//! step type (`document`, `steps/*`), check form fields and JSON Schemas, then check the step
//! graph (`graph`). Expressions and templates are checked through the seam in `crate::lang`.

mod decode;
mod document;
mod duration;
pub mod field;
mod graph;
mod model;
mod schema;
mod steps;

pub use duration::Duration;
pub use model::*;

use crate::diag::Diagnostic;
use crate::located::{self, Limits};

/// Parses and validates a workflow definition, reporting every problem found.
///
/// On failure the problems are sorted by position; a syntax error is reported alone, since
/// nothing after it can be trusted.
pub fn parse(src: &str) -> Result<Workflow, Vec<Diagnostic>> {
    let (root, warnings) = located::load(src, Limits::default()).map_err(|d| vec![d])?;
    let mut decoder = decode::Decoder { diags: warnings };
    let workflow = document::decode(&mut decoder, &root);
    let mut diags = decoder.diags;
    match workflow {
        Some(wf) if diags.is_empty() => Ok(wf),
        _ => {
            diags.sort_by_key(|a| (a.line, a.column));
            diags.dedup();
            Err(diags)
        }
    }
}

/// Whether `s` may name a workflow, step or template: 1–64 of `A-Z a-z 0-9 _ - .`,
/// beginning with a letter, digit or `_`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether `s` may name a value in `runtime` (so expressions can reach it as `runtime.<s>`):
/// 1–64 of `A-Z a-z 0-9 _`, not beginning with a digit.
pub fn is_data_key(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests;
