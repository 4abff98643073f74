//! The flow language's small, safe expressions and `{{ }}` templates.
//!
//! An expression compares values and combines conditions: literals
//! (`'text'`, `42`, `true`, `null`), variables (`account`, `customer.name`),
//! `== != < <= > >=`, `and or not` (also `&& || !`), parentheses and
//! `cond ? a : b`. There are no function calls and no assignments: a flow
//! author cannot run code. Everything is parsed when the flow is loaded, so a
//! typo is a validation error, not a failed call.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// The variables of one call: caller, dialled number, collected digits,
/// webhook results.
pub type Vars = BTreeMap<String, Value>;

/// A parse error, with the byte offset in the source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why an expression could not be evaluated for this call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("the variable `{0}` is not set")]
    Missing(String),
    #[error("cannot compare {0} with {1} using `{2}`")]
    Incomparable(&'static str, &'static str, &'static str),
    /// A header's value would carry a line break or another control
    /// character (it could add headers of its own).
    #[error("the header value from `{0}` holds a control character")]
    ControlInHeader(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    /// A dotted path: `customer.name` is the field `name` of the variable `customer`.
    Var(Vec<String>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

impl Expr {
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        let tokens = lex(src)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            end: src.len(),
        };
        let e = p.cond()?;
        match p.peek() {
            None => Ok(e),
            Some((at, t)) => Err(ExprError {
                offset: at,
                message: format!("unexpected {} after a complete expression", t.describe()),
            }),
        }
    }

    /// The variables the expression reads (their first path segment).
    pub fn variables(&self, out: &mut Vec<String>) {
        match self {
            Expr::Lit(_) => {}
            Expr::Var(path) => out.push(path[0].clone()),
            Expr::Not(e) => e.variables(out),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) => {
                a.variables(out);
                b.variables(out);
            }
            Expr::Cond(c, a, b) => {
                c.variables(out);
                a.variables(out);
                b.variables(out);
            }
        }
    }

    pub fn eval(&self, vars: &Vars) -> Result<Value, EvalError> {
        Ok(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Var(path) => lookup(vars, path)?.clone(),
            Expr::Not(e) => Value::Bool(!truthy(&e.eval(vars)?)),
            // Short-circuit, so `customer and customer.vip` is safe to write.
            Expr::And(a, b) => Value::Bool(truthy(&a.eval(vars)?) && truthy(&b.eval(vars)?)),
            Expr::Or(a, b) => Value::Bool(truthy(&a.eval(vars)?) || truthy(&b.eval(vars)?)),
            Expr::Cmp(op, a, b) => Value::Bool(compare(*op, &a.eval(vars)?, &b.eval(vars)?)?),
            Expr::Cond(c, a, b) => {
                if truthy(&c.eval(vars)?) {
                    a.eval(vars)?
                } else {
                    b.eval(vars)?
                }
            }
        })
    }

    /// Evaluates as a condition.
    pub fn test(&self, vars: &Vars) -> Result<bool, EvalError> {
        self.eval(vars).map(|v| truthy(&v))
    }
}

fn lookup<'a>(vars: &'a Vars, path: &[String]) -> Result<&'a Value, EvalError> {
    let missing = || EvalError::Missing(path.join("."));
    let mut v = vars.get(&path[0]).ok_or_else(missing)?;
    for seg in &path[1..] {
        v = match v {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(missing)?;
    }
    Ok(v)
}

/// `false`, `null`, `""`, `0` and empty lists are false; everything else is true.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Digits collected from the caller are text; compared with a number they
/// compare as the number they spell, so `account == 1234` reads naturally.
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn compare(op: CmpOp, a: &Value, b: &Value) -> Result<bool, EvalError> {
    use std::cmp::Ordering;
    let numeric = matches!(a, Value::Number(_)) || matches!(b, Value::Number(_));
    let ord: Option<Ordering> = if numeric {
        match (as_number(a), as_number(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        }
    } else {
        match (a, b) {
            (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
            _ => None,
        }
    };
    Ok(match (op, ord) {
        (CmpOp::Eq, Some(o)) => o == Ordering::Equal,
        (CmpOp::Ne, Some(o)) => o != Ordering::Equal,
        (CmpOp::Eq, None) => a == b,
        (CmpOp::Ne, None) => a != b,
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::Le, Some(o)) => o != Ordering::Greater,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::Ge, Some(o)) => o != Ordering::Less,
        (op, None) => {
            return Err(EvalError::Incomparable(
                type_name(a),
                type_name(b),
                op.symbol(),
            ))
        }
    })
}

/// How a value reads when put into text: `1234`, `Ada`, `true`, nothing for null.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(&'static str),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Num(n) => format!("{n}"),
            Tok::Op(o) => format!("`{o}`"),
        }
    }
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            out.push((start, Tok::Ident(src[start..i].to_owned())));
            continue;
        }
        if c.is_ascii_digit() || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let n = src[start..i].parse().map_err(|_| ExprError {
                offset: start,
                message: format!("`{}` is not a number", &src[start..i]),
            })?;
            out.push((start, Tok::Num(n)));
            continue;
        }
        if c == b'\'' || c == b'"' {
            i += 1;
            let body = i;
            while i < b.len() && b[i] != c {
                i += 1;
            }
            if i == b.len() {
                return Err(ExprError {
                    offset: start,
                    message: "text that is never closed: add the closing quote".into(),
                });
            }
            out.push((start, Tok::Str(src[body..i].to_owned())));
            i += 1;
            continue;
        }
        let two = src.get(i..i + 2).unwrap_or("");
        let op = ["==", "!=", "<=", ">=", "&&", "||"]
            .into_iter()
            .find(|o| *o == two);
        if let Some(op) = op {
            out.push((start, Tok::Op(op)));
            i += 2;
            continue;
        }
        let op = match c {
            b'<' => "<",
            b'>' => ">",
            b'!' => "!",
            b'(' => "(",
            b')' => ")",
            b'?' => "?",
            b':' => ":",
            b'=' => {
                return Err(ExprError {
                    offset: start,
                    message: "`=` is not a comparison: write `==`".into(),
                })
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(ExprError {
                    offset: start,
                    message: format!("unexpected character `{ch}`"),
                });
            }
        };
        out.push((start, Tok::Op(op)));
        i += 1;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<(usize, &Tok)> {
        self.tokens.get(self.pos).map(|(at, t)| (*at, t))
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some((_, Tok::Op(o))) if *o == op) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some((_, Tok::Ident(w))) if w == word) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn cond(&mut self) -> Result<Expr, ExprError> {
        let c = self.or()?;
        if self.eat_op("?") {
            let a = self.cond()?;
            if !self.eat_op(":") {
                return Err(self.expected("`:` and the value when the condition is false"));
            }
            let b = self.cond()?;
            return Ok(Expr::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(c)
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.and()?;
        while self.eat_word("or") || self.eat_op("||") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.not()?;
        while self.eat_word("and") || self.eat_op("&&") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.eat_word("not") || self.eat_op("!") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, ExprError> {
        let a = self.atom()?;
        let op = match self.peek() {
            Some((_, Tok::Op("=="))) => CmpOp::Eq,
            Some((_, Tok::Op("!="))) => CmpOp::Ne,
            Some((_, Tok::Op("<"))) => CmpOp::Lt,
            Some((_, Tok::Op("<="))) => CmpOp::Le,
            Some((_, Tok::Op(">"))) => CmpOp::Gt,
            Some((_, Tok::Op(">="))) => CmpOp::Ge,
            _ => return Ok(a),
        };
        self.pos += 1;
        let b = self.atom()?;
        Ok(Expr::Cmp(op, Box::new(a), Box::new(b)))
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        let Some((at, tok)) = self.peek() else {
            return Err(self.expected("a value or a variable"));
        };
        let tok = tok.clone();
        self.pos += 1;
        Ok(match tok {
            Tok::Num(n) => {
                Expr::Lit(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
            }
            Tok::Str(s) => Expr::Lit(Value::String(s)),
            Tok::Ident(w) => match w.as_str() {
                "true" => Expr::Lit(Value::Bool(true)),
                "false" => Expr::Lit(Value::Bool(false)),
                "null" => Expr::Lit(Value::Null),
                "and" | "or" | "not" => {
                    return Err(ExprError {
                        offset: at,
                        message: format!("expected a value or a variable, found `{w}`"),
                    })
                }
                _ => {
                    let path: Vec<String> = w.split('.').map(str::to_owned).collect();
                    if path.iter().any(String::is_empty) {
                        return Err(ExprError {
                            offset: at,
                            message: format!("`{w}` is not a variable name"),
                        });
                    }
                    Expr::Var(path)
                }
            },
            Tok::Op("(") => {
                let e = self.cond()?;
                if !self.eat_op(")") {
                    return Err(self.expected("`)`"));
                }
                e
            }
            Tok::Op(o) => {
                return Err(ExprError {
                    offset: at,
                    message: format!("expected a value or a variable, found `{o}`"),
                })
            }
        })
    }

    fn expected(&self, what: &str) -> ExprError {
        match self.peek() {
            Some((at, t)) => ExprError {
                offset: at,
                message: format!("expected {what}, found {}", t.describe()),
            },
            None => ExprError {
                offset: self.end,
                message: format!("expected {what} at the end"),
            },
        }
    }
}

/// Appends `value` percent-encoded: every byte but RFC 3986's unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`).
fn percent_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Text with `{{expression}}` holes: `"Hello {{customer.name}}"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Hole(Expr),
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, ExprError> {
        let mut parts = Vec::new();
        let mut rest = src;
        let mut base = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let inner = &rest[open + 2..];
            let close = inner.find("}}").ok_or(ExprError {
                offset: base + open,
                message: "`{{` is never closed: add `}}`".into(),
            })?;
            let expr = Expr::parse(&inner[..close]).map_err(|e| ExprError {
                offset: base + open + 2 + e.offset,
                message: e.message,
            })?;
            parts.push(Part::Hole(expr));
            let consumed = open + 2 + close + 2;
            base += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// A template that is exactly one `{{expr}}` yields the value itself
    /// (a number stays a number); anything else yields text.
    pub fn eval(&self, vars: &Vars) -> Result<Value, EvalError> {
        if let [Part::Hole(e)] = self.parts.as_slice() {
            return e.eval(vars);
        }
        self.render(vars).map(Value::String)
    }

    pub fn render(&self, vars: &Vars) -> Result<String, EvalError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Hole(e) => out.push_str(&render_value(&e.eval(vars)?)),
            }
        }
        Ok(out)
    }

    /// As [`Template::render`], for a URL: each value is percent-encoded
    /// (all but RFC 3986's unreserved characters), so a caller ID such as
    /// `+1202…&role=admin#x` stays one value wherever it stands (path
    /// segment or query value). The template's own text is kept as written.
    pub fn render_url(&self, vars: &Vars) -> Result<String, EvalError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Hole(e) => percent_encode(&render_value(&e.eval(vars)?), &mut out),
            }
        }
        Ok(out)
    }

    /// As [`Template::render`], for a header's value: a value with a line
    /// break or another control character is an error, not a new header.
    pub fn render_header(&self, vars: &Vars) -> Result<String, EvalError> {
        let text = self.render(vars)?;
        if text.chars().any(|c| c.is_control() && c != '\t') {
            let mut names = Vec::new();
            self.variables(&mut names);
            return Err(EvalError::ControlInHeader(names.join(", ")));
        }
        Ok(text)
    }

    pub fn variables(&self, out: &mut Vec<String>) {
        for p in &self.parts {
            if let Part::Hole(e) = p {
                e.variables(out);
            }
        }
    }

    pub fn is_constant(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_in_a_url_are_encoded_and_headers_refuse_line_breaks() {
        let mut v = Vars::new();
        v.insert("caller".into(), json!("+1202555&role=admin#x y/z"));
        v.insert("n".into(), json!(7));
        let t =
            Template::parse("https://crm.example/c/{{caller}}?phone={{caller}}&n={{n}}").unwrap();
        assert_eq!(
            t.render_url(&v).unwrap(),
            "https://crm.example/c/%2B1202555%26role%3Dadmin%23x%20y%2Fz?phone=%2B1202555%26role%3Dadmin%23x%20y%2Fz&n=7"
        );
        let t = Template::parse("{{caller}}").unwrap();
        assert_eq!(
            t.render_url(&[("caller".to_owned(), json!("é"))].into_iter().collect())
                .unwrap(),
            "%C3%A9"
        );
        let h = Template::parse("Bearer {{token}}").unwrap();
        v.insert("token".into(), json!("abc\r\nX-Admin: 1"));
        assert_eq!(
            h.render_header(&v),
            Err(EvalError::ControlInHeader("token".into()))
        );
        v.insert("token".into(), json!("abc"));
        assert_eq!(h.render_header(&v).unwrap(), "Bearer abc");
    }

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.insert("account".into(), json!("001234"));
        v.insert(
            "customer".into(),
            json!({"name": "Ada", "vip": true, "open": 3}),
        );
        v.insert("caller".into(), json!("+15551234567"));
        v
    }

    fn eval(src: &str) -> Result<Value, EvalError> {
        Expr::parse(src).unwrap().eval(&vars())
    }

    #[test]
    fn comparisons_and_logic() {
        assert_eq!(eval("account == 1234"), Ok(json!(true)));
        assert_eq!(eval("account == '1234'"), Ok(json!(false)));
        assert_eq!(eval("customer.vip and customer.open >= 3"), Ok(json!(true)));
        assert_eq!(
            eval("not customer.vip || customer.name != 'Ada'"),
            Ok(json!(false))
        );
        assert_eq!(
            eval("(customer.open < 2) or caller == '+15551234567'"),
            Ok(json!(true))
        );
        assert_eq!(eval("customer.vip ? 10 : 0"), Ok(json!(10.0)));
        assert_eq!(eval("customer.name < 'Bob'"), Ok(json!(true)));
    }

    #[test]
    fn missing_variables_and_bad_comparisons_are_errors() {
        assert_eq!(
            eval("nobody == 1"),
            Err(EvalError::Missing("nobody".into()))
        );
        assert_eq!(
            eval("customer.age > 1"),
            Err(EvalError::Missing("customer.age".into()))
        );
        assert!(matches!(
            eval("customer > 1"),
            Err(EvalError::Incomparable(..))
        ));
        // Short-circuit keeps a guarded lookup safe.
        assert_eq!(eval("false and nobody"), Ok(json!(false)));
    }

    #[test]
    fn parse_errors_point_at_the_problem() {
        let e = Expr::parse("account = 1").unwrap_err();
        assert_eq!(e.offset, 8);
        assert!(e.message.contains("=="), "{}", e.message);
        let e = Expr::parse("a == ").unwrap_err();
        assert_eq!(e.offset, 5);
        let e = Expr::parse("a ? 1").unwrap_err();
        assert!(e.message.contains("`:`"), "{}", e.message);
        assert!(Expr::parse("'open").is_err());
        assert!(Expr::parse("a b").is_err());
        assert!(Expr::parse("exec('rm')").is_err());
    }

    #[test]
    fn templates() {
        let t = Template::parse("Hello {{customer.name}}, account {{account}}").unwrap();
        assert_eq!(t.render(&vars()).unwrap(), "Hello Ada, account 001234");
        let t = Template::parse("{{customer.open}}").unwrap();
        assert_eq!(t.eval(&vars()).unwrap(), json!(3));
        assert!(Template::parse("plain").unwrap().is_constant());
        let e = Template::parse("x {{ a == }}").unwrap_err();
        assert_eq!(e.offset, 10);
        assert!(Template::parse("{{ a").is_err());
    }
}
