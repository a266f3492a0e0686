//! Renders definition problems compiler-style (`file:line:col: error: message [code]`), the
//! format editors and CI logs already know how to jump to.

use std::fmt::Write;

use scaff_core::diag::Diagnostic;

/// One line per problem, in the order given.
pub fn render(file: &str, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let at = if d.path.is_empty() {
            String::new()
        } else {
            format!(" (at {})", d.path)
        };
        let _ = writeln!(
            out,
            "{file}:{}:{}: error: {}{at} [{}]",
            d.line, d.column, d.message, d.code
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaff_core::diag::{Location, codes};

    #[test]
    fn lines_are_file_line_col_error_message() {
        let d = Diagnostic::new(
            codes::KEY_UNKNOWN,
            "steps[0].nxet",
            Location::new(4, 5),
            "unknown key `nxet`; did you mean `next`?",
        );
        assert_eq!(
            render("flow.yaml", &[d]),
            "flow.yaml:4:5: error: unknown key `nxet`; did you mean `next`? (at steps[0].nxet) [key.unknown]\n"
        );
    }
}
