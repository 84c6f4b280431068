//! The predicate language: tokens, then a recursive-descent parser.
//!
//! ```text
//! or        := and ("OR" and)*
//! and       := not ("AND" not)*
//! not       := "NOT" not | predicate
//! predicate := operand [cmp operand | ["NOT"] "IN" "(" literal, ... ")" | "IS" ["NOT"] "NULL"]
//! operand   := column | "quoted column" | literal | "(" or ")"
//! ```

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cmp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Column(String),
    Literal(Literal),
    Compare(Box<Expr>, Cmp, Box<Expr>),
    InList {
        expr: Box<Expr>,
        list: Vec<Literal>,
        negated: bool,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

impl Expr {
    /// Every column the expression names, once each, in order of appearance.
    pub fn columns(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.visit(&mut |name| {
            if !names.contains(&name) {
                names.push(name)
            }
        });
        names
    }

    fn visit<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Expr::Column(name) => f(name),
            Expr::Literal(_) => {}
            Expr::Compare(l, _, r) | Expr::And(l, r) | Expr::Or(l, r) => {
                l.visit(f);
                r.visit(f);
            }
            Expr::InList { expr, .. } | Expr::IsNull { expr, .. } | Expr::Not(expr) => {
                expr.visit(f)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Number(String),
    Str(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

pub fn parse(text: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        at: 0,
    };
    let expr = parser.or()?;
    match parser.tokens.get(parser.at) {
        None => Ok(expr),
        Some(token) => Err(format!(
            "unexpected {} after a complete predicate",
            show(token)
        )),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        i += 1;
        match c {
            c if c.is_whitespace() => {}
            '(' => tokens.push(Token::LParen),
            ')' => tokens.push(Token::RParen),
            ',' => tokens.push(Token::Comma),
            '=' => tokens.push(Token::Op("=")),
            '!' | '<' | '>' => {
                let next = chars.get(i).copied();
                let (op, two_chars) = match (c, next) {
                    ('!', Some('=')) | ('<', Some('>')) => ("!=", true),
                    ('<', Some('=')) => ("<=", true),
                    ('>', Some('=')) => (">=", true),
                    ('<', _) => ("<", false),
                    ('>', _) => (">", false),
                    _ => return Err(format!("unexpected '!' at {start}")),
                };
                i += usize::from(two_chars);
                tokens.push(Token::Op(op));
            }
            '\'' | '"' => {
                let mut text = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unclosed {c} starting at {start}")),
                        Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                            text.push(c);
                            i += 2;
                        }
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(&other) => {
                            text.push(other);
                            i += 1;
                        }
                    }
                }
                tokens.push(if c == '\'' {
                    Token::Str(text)
                } else {
                    Token::Quoted(text)
                });
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i).is_some_and(char::is_ascii_digit))
                || c == '.' =>
            {
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                tokens.push(Token::Number(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character {other:?} at {start}")),
        }
    }
    Ok(tokens)
}

fn show(token: &Token) -> String {
    match token {
        Token::Word(w) => w.clone(),
        Token::Quoted(q) => format!("\"{q}\""),
        Token::Number(n) => n.clone(),
        Token::Str(s) => format!("'{s}'"),
        Token::Op(op) => op.to_string(),
        Token::LParen => "'('".into(),
        Token::RParen => "')'".into(),
        Token::Comma => "','".into(),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token, String> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token.ok_or_else(|| "the predicate ends too early".to_string())
    }

    fn keyword(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(word) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, expected: Token) -> Result<(), String> {
        let token = self.next()?;
        if token == expected {
            Ok(())
        } else {
            Err(format!(
                "expected {} but found {}",
                show(&expected),
                show(&token)
            ))
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.keyword("AND") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.keyword("NOT") {
            Ok(Expr::Not(Box::new(self.not()?)))
        } else {
            self.predicate()
        }
    }

    fn predicate(&mut self) -> Result<Expr, String> {
        let left = self.operand()?;
        if let Some(Token::Op(op)) = self.peek().cloned() {
            self.at += 1;
            let cmp = match op {
                "=" => Cmp::Eq,
                "!=" => Cmp::NotEq,
                "<" => Cmp::Lt,
                "<=" => Cmp::LtEq,
                ">" => Cmp::Gt,
                _ => Cmp::GtEq,
            };
            return Ok(Expr::Compare(
                Box::new(left),
                cmp,
                Box::new(self.operand()?),
            ));
        }
        if self.keyword("IS") {
            let negated = self.keyword("NOT");
            if !self.keyword("NULL") {
                return Err("expected NULL after IS [NOT]".into());
            }
            return Ok(Expr::IsNull {
                expr: Box::new(left),
                negated,
            });
        }
        let negated = self.keyword("NOT");
        if self.keyword("IN") {
            self.expect(Token::LParen)?;
            let mut list = vec![self.literal()?];
            while self.peek() == Some(&Token::Comma) {
                self.at += 1;
                list.push(self.literal()?);
            }
            self.expect(Token::RParen)?;
            return Ok(Expr::InList {
                expr: Box::new(left),
                list,
                negated,
            });
        }
        if negated {
            return Err("expected IN after NOT".into());
        }
        Ok(left)
    }

    fn operand(&mut self) -> Result<Expr, String> {
        match self.peek().cloned() {
            Some(Token::LParen) => {
                self.at += 1;
                let inner = self.or()?;
                self.expect(Token::RParen)?;
                Ok(inner)
            }
            Some(Token::Quoted(name)) => {
                self.at += 1;
                Ok(Expr::Column(name))
            }
            Some(Token::Word(word)) if !is_literal_word(&word) => {
                if ["AND", "OR", "NOT", "IN", "IS"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    return Err(format!("expected a column or a value but found {word}"));
                }
                self.at += 1;
                Ok(Expr::Column(word))
            }
            _ => Ok(Expr::Literal(self.literal()?)),
        }
    }

    fn literal(&mut self) -> Result<Literal, String> {
        match self.next()? {
            Token::Str(s) => Ok(Literal::Str(s)),
            Token::Number(n) => match n.parse::<i64>() {
                Ok(i) => Ok(Literal::Int(i)),
                Err(_) => n
                    .parse::<f64>()
                    .map(Literal::Float)
                    .map_err(|_| format!("{n} is not a number")),
            },
            Token::Word(w) if w.eq_ignore_ascii_case("TRUE") => Ok(Literal::Bool(true)),
            Token::Word(w) if w.eq_ignore_ascii_case("FALSE") => Ok(Literal::Bool(false)),
            Token::Word(w) if w.eq_ignore_ascii_case("NULL") => Ok(Literal::Null),
            other => Err(format!("expected a value but found {}", show(&other))),
        }
    }
}

fn is_literal_word(word: &str) -> bool {
    ["TRUE", "FALSE", "NULL"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_sql_like() {
        let expr = parse("a = 1 OR b IN ('x', 'y''z') AND NOT c IS NULL").unwrap();
        let Expr::Or(_, right) = expr else {
            panic!("OR is loosest")
        };
        assert!(matches!(*right, Expr::And(..)));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse("a >").unwrap_err().contains("ends too early"));
        assert!(parse("a = 'x").unwrap_err().contains("unclosed"));
        assert!(parse("a = 1 b").unwrap_err().contains("unexpected b"));
    }
}
