//! A client's filter as exactly one SQL expression, parsed by sqlparser in DuckDB's
//! dialect. Whatever follows the expression (a closing parenthesis, a `;`, a second
//! statement) is refused, wherever comments or quoting put it; so is a subquery, which
//! would read beyond the filtered table. Callers use the parsed [`Expr`] (or its
//! rendering, `Display`), never the client's text.

use std::fmt;
use std::ops::ControlFlow;

pub use sqlparser::ast;
use sqlparser::ast::{Expr, InTarget, visit_expressions};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// How much of a filter an error quotes.
const QUOTED_CHARS: usize = 200;

/// Functions (and table functions or views) that show the engine's internals, its
/// configuration, secrets, files and memory, rather than data: no client query or
/// filter may name them.
pub fn is_internal_function(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("duckdb_")
        || name.starts_with("pragma_")
        || matches!(
            name.as_str(),
            "which_secret" | "current_setting" | "getvariable" | "getenv" | "sqlite_master"
        )
}

/// Why a filter was refused; the message quotes the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub filter: String,
    pub reason: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A filter is the client's text: quote its start only.
        match self.filter.char_indices().nth(QUOTED_CHARS) {
            None => write!(f, "invalid filter {:?}: {}", self.filter, self.reason),
            Some((end, _)) => write!(
                f,
                "invalid filter {:?}… ({} bytes): {}",
                &self.filter[..end],
                self.filter.len(),
                self.reason
            ),
        }
    }
}

impl std::error::Error for FilterError {}

/// Parse `text` as one boolean-valued SQL expression with nothing after it.
pub fn parse_filter(text: &str) -> Result<Expr, FilterError> {
    let refuse = |reason: String| FilterError {
        filter: text.to_string(),
        reason,
    };
    if text.trim().is_empty() {
        return Err(refuse("it is empty".into()));
    }
    let dialect = DuckDbDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|err| refuse(parser_message(err)))?;
    let expr = parser
        .parse_expr()
        .map_err(|err| refuse(parser_message(err)))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(refuse(format!(
            "it must be one expression, but {} follows it at line {}, column {}",
            next.token, next.span.start.line, next.span.start.column
        )));
    }
    let subquery = visit_expressions(&expr, |e| match e {
        Expr::Subquery(_)
        | Expr::Exists { .. }
        | Expr::In {
            target: InTarget::Subquery(_) | InTarget::Table { .. },
            ..
        } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    if subquery.is_break() {
        return Err(refuse(
            "subqueries are not allowed: a filter reads only its own table's columns".into(),
        ));
    }
    let placeholder = visit_expressions(&expr, |e| match e {
        Expr::Value(value) if matches!(value.value, ast::Value::Placeholder(_)) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    if placeholder.is_break() {
        return Err(refuse(
            "parameters (?, $1) are not allowed: write the value itself".into(),
        ));
    }
    let internal = visit_expressions(&expr, |e| match e {
        Expr::Function(call) => match call.name.0.last().and_then(|part| part.as_ident()) {
            Some(ident) if is_internal_function(&ident.value) => {
                ControlFlow::Break(ident.value.clone())
            }
            _ => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    });
    if let ControlFlow::Break(name) = internal {
        return Err(refuse(format!(
            "{name}() is not allowed: it shows the engine's internals, not the table's data"
        )));
    }
    Ok(expr)
}

fn parser_message(err: ParserError) -> String {
    match err {
        ParserError::TokenizerError(msg) | ParserError::ParserError(msg) => msg,
        ParserError::RecursionLimitExceeded => "it is nested too deeply".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_expression_is_rendered_canonically() {
        let expr = parse_filter("a > 1   and b = ')' -- a comment").unwrap();
        assert_eq!(expr.to_string(), "a > 1 AND b = ')'");
        for ok in [
            "x BETWEEN 1 AND 2",
            "name ILIKE 'a%'",
            "CAST(v AS INTEGER) % 2 = 0",
            "d >= DATE '2024-01-01'",
            "v::DOUBLE / 2 > 1.5",
            "NOT (a IS NULL OR b IN (1, 2))",
        ] {
            parse_filter(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn escapes_from_the_expression_are_refused() {
        for bad in [
            "1=0 --'\n) UNION ALL SELECT secret FROM other.t WHERE (1=1 --'",
            "1=0 /*'*/) UNION ALL SELECT secret FROM other.t WHERE (1=1 /*'*/",
            "1=0 AND $$'$$ = $$'$$) UNION ALL SELECT secret FROM other.t WHERE ($$'$$ = $$'$$",
            "a > 1; DROP TABLE t",
            "1=1) UNION ALL (SELECT 1",
            "a IN (SELECT secret FROM other.t)",
            "EXISTS (SELECT 1)",
            "a IN other.t",
            "(a",
            "'x",
            "  ",
        ] {
            let err = parse_filter(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid filter"), "{err}");
        }
    }

    #[test]
    fn parameters_and_engine_internals_are_refused() {
        for (bad, why) in [
            ("id = ?", "parameters"),
            ("id = $1", "parameters"),
            (
                "current_setting('threads') = '2'",
                "current_setting() is not allowed",
            ),
            ("length(duckdb_version()) > 0", "not allowed"),
        ] {
            let err = parse_filter(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn long_filters_are_quoted_in_part() {
        let long = format!("a = '{}' AND", "x".repeat(10_000));
        let err = parse_filter(&long).unwrap_err().to_string();
        assert!(err.len() < 600, "{} chars", err.len());
    }
}
