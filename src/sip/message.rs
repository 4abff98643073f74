//! SIP messages as the engine sees them: parsed by rsipstack's rsip-derived
//! parser, then held in our own small types so no rsipstack type leaves `sip/`.

use std::fmt::{self, Write as _};

use rsipstack::sip as rsip;

/// SIP request methods; `Other` keeps unknown ones for a `501`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Info,
    Register,
    Refer,
    Notify,
    Subscribe,
    Update,
    Prack,
    Message,
    Publish,
    Other(String),
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "REGISTER" => Method::Register,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Register => "REGISTER",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header fields in order, names in their full (not compact) form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Headers from (name, value) pairs, in order.
    pub fn of(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// The first value of a header (case-insensitive name).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, with comma-separated lists split into entries.
    pub fn get_all_split<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_list(v))
    }

    /// Every value of a header as written.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Replaces the first entry of the first Via header (the top Via).
    pub fn replace_top_via(&mut self, new_top: &str) {
        if let Some((_, value)) = self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case("Via"))
        {
            let mut entries: Vec<&str> = split_list(value).collect();
            if entries.is_empty() {
                *value = new_top.to_owned();
            } else {
                entries[0] = new_top;
                *value = entries.join(", ");
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    fn write_to(&self, out: &mut String) {
        for (n, v) in &self.0 {
            if n.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(out, "{n}: {v}\r\n");
        }
    }
}

/// Splits a header value on commas that are outside quotes and angle brackets.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(value[start.min(value.len())..].trim());
    parts.into_iter().filter(|p| !p.is_empty())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// Why a datagram or stream chunk is not a SIP message we can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a SIP message: {0}")]
    Syntax(String),
    #[error("missing mandatory header {0}")]
    MissingHeader(&'static str),
    #[error("bad {header} header: '{value}'")]
    BadHeader { header: &'static str, value: String },
    #[error("Content-Length {declared} but {available} body bytes")]
    ShortBody { declared: usize, available: usize },
}

/// Parses one complete SIP message (a UDP datagram or a framed TCP message)
/// and checks what every later layer relies on: the mandatory headers, a
/// well-formed CSeq and a body as long as Content-Length says.
pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
    // rsip knows a fixed set of methods; RFC 3261 methods are extensible
    // tokens, and an unknown one must get 501, not 400.
    let (data, unknown) = stand_in_for_unknown_method(data);
    let parsed =
        rsip::parser::parse_message(&data).map_err(|e| ParseError::Syntax(e.to_string()))?;
    let declared = declared_content_length(&data)?;
    let msg = match parsed {
        rsip::SipMessage::Request(r) => Message::Request(Request {
            method: unknown.unwrap_or_else(|| Method::parse(&r.method.to_string())),
            uri: r.uri.to_string(),
            headers: convert_headers(&r.headers),
            body: r.body,
        }),
        rsip::SipMessage::Response(r) => Message::Response(Response {
            status: u16::from(r.status_code.clone()),
            reason: r
                .wire_reason
                .clone()
                .unwrap_or_else(|| r.status_code.to_string()),
            headers: convert_headers(&r.headers),
            body: r.body,
        }),
    };
    let (headers, body_len) = match &msg {
        Message::Request(r) => (&r.headers, r.body.len()),
        Message::Response(r) => (&r.headers, r.body.len()),
    };
    if let Some(declared) = declared {
        if declared > body_len {
            return Err(ParseError::ShortBody {
                declared,
                available: body_len,
            });
        }
    }
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if headers.get(name).is_none() {
            return Err(ParseError::MissingHeader(name));
        }
    }
    let cseq = headers.get("CSeq").unwrap_or_default();
    let (_, cseq_method) = parse_cseq(cseq).ok_or_else(|| ParseError::BadHeader {
        header: "CSeq",
        value: cseq.to_owned(),
    })?;
    if let Message::Request(r) = &msg {
        if cseq_method != r.method {
            return Err(ParseError::BadHeader {
                header: "CSeq",
                value: cseq.to_owned(),
            });
        }
        if let Some(mf) = r.headers.get("Max-Forwards") {
            if mf.trim().parse::<u8>().is_err() {
                return Err(ParseError::BadHeader {
                    header: "Max-Forwards",
                    value: mf.to_owned(),
                });
            }
        }
    }
    Ok(msg)
}

/// When the request line names a method rsip does not know, returns the
/// message with `OPTIONS` in its place, and the method to restore.
fn stand_in_for_unknown_method(data: &[u8]) -> (std::borrow::Cow<'_, [u8]>, Option<Method>) {
    let token_end = data.iter().position(|&b| b == b' ').unwrap_or(0);
    let token = &data[..token_end];
    let is_token = !token.is_empty()
        && token
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b));
    if !is_token || token.starts_with(b"SIP/") {
        return (std::borrow::Cow::Borrowed(data), None);
    }
    let name = String::from_utf8_lossy(token).into_owned();
    if name.parse::<rsip::Method>().is_ok() {
        return (std::borrow::Cow::Borrowed(data), None);
    }
    let mut replaced = b"OPTIONS".to_vec();
    replaced.extend_from_slice(&data[token_end..]);
    (std::borrow::Cow::Owned(replaced), Some(Method::Other(name)))
}

/// rsipstack reads an unparsable Content-Length as 0; we need to know.
fn declared_content_length(data: &[u8]) -> Result<Option<usize>, ParseError> {
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..head_end]);
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
            return value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ParseError::BadHeader {
                    header: "Content-Length",
                    value: value.trim().to_owned(),
                });
        }
    }
    Ok(None)
}

fn convert_headers(h: &rsip::Headers) -> Headers {
    let mut out = Headers::default();
    for header in h.iter() {
        let text = header.to_string();
        if let Some((name, value)) = text.split_once(':') {
            out.push(name.trim(), value.trim());
        }
    }
    out
}

/// The `400 Bad Request` for a request that failed [`parse`], built from
/// whatever Via, From, To, Call-ID and CSeq lines it has; `None` when it
/// cannot be answered (a response, an ACK, no Via, not SIP at all).
pub fn bad_request(bytes: &[u8], err: &ParseError, to_tag: &str) -> Option<Response> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default();
    if start.starts_with("SIP/") || !start.ends_with("SIP/2.0") || start.starts_with("ACK ") {
        return None;
    }
    let mut headers = Headers::default();
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = match name.trim() {
            "v" => "Via",
            "f" => "From",
            "t" => "To",
            "i" => "Call-ID",
            n => n,
        };
        let value = value.trim();
        for keep in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if name.eq_ignore_ascii_case(keep) {
                if keep == "To" && !value.contains(";tag=") {
                    headers.push(keep, format!("{value};tag={to_tag}"));
                } else {
                    headers.push(keep, value);
                }
            }
        }
    }
    headers.get("Via")?;
    Some(Response {
        status: 400,
        reason: format!("Bad Request ({err})").replace(['\r', '\n'], " "),
        headers,
        body: Vec::new(),
    })
}

/// `CSeq: 314159 INVITE` → (314159, INVITE).
pub fn parse_cseq(value: &str) -> Option<(u32, Method)> {
    let mut it = value.split_whitespace();
    let seq = it.next()?.parse().ok()?;
    let method = Method::parse(it.next()?);
    if it.next().is_some() {
        return None;
    }
    Some((seq, method))
}

impl Request {
    pub fn call_id(&self) -> &str {
        self.headers.get("Call-ID").unwrap_or_default()
    }

    pub fn cseq(&self) -> Option<(u32, Method)> {
        parse_cseq(self.headers.get("CSeq")?)
    }

    pub fn top_via(&self) -> Option<&str> {
        self.headers.get_all_split("Via").next()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512 + self.body.len());
        let _ = write!(out, "{} {} SIP/2.0\r\n", self.method, self.uri);
        self.headers.write_to(&mut out);
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

impl Response {
    pub fn cseq(&self) -> Option<(u32, Method)> {
        parse_cseq(self.headers.get("CSeq")?)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512 + self.body.len());
        let _ = write!(out, "SIP/2.0 {} {}\r\n", self.status, self.reason);
        self.headers.write_to(&mut out);
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// The standard reason phrase for the codes the engine sends.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:100@127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK0, SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKx\r\n\
f: \"Alice, A\" <sip:alice@127.0.0.1>;tag=a1\r\n\
t: <sip:100@127.0.0.1>\r\n\
i: abc@host\r\n\
CSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\n\
l: 4\r\n\r\nv=0\n";

    #[test]
    fn parses_compact_headers_and_lists() {
        let Message::Request(r) = parse(INVITE.as_bytes()).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.call_id(), "abc@host");
        assert_eq!(r.cseq(), Some((1, Method::Invite)));
        assert_eq!(r.headers.get_all_split("Via").count(), 3);
        assert!(r.top_via().unwrap().contains("z9hG4bK1"));
        assert_eq!(r.body, b"v=0\n");
        assert_eq!(
            split_list("\"Alice, A\" <sip:a@b>;tag=1, <sip:c,d@e>").count(),
            2
        );
    }

    #[test]
    fn rejects_what_later_layers_rely_on() {
        let no_cseq = INVITE.replace("CSeq: 1 INVITE\r\n", "");
        assert_eq!(
            parse(no_cseq.as_bytes()),
            Err(ParseError::MissingHeader("CSeq"))
        );
        let bad_cseq = INVITE.replace("CSeq: 1 INVITE", "CSeq: one INVITE");
        assert!(matches!(
            parse(bad_cseq.as_bytes()),
            Err(ParseError::BadHeader { header: "CSeq", .. })
        ));
        let short = INVITE.replace("l: 4", "l: 400");
        assert!(matches!(
            parse(short.as_bytes()),
            Err(ParseError::ShortBody { .. })
        ));
        assert!(parse(b"hello\r\n\r\n").is_err());
        let err = parse(bad_cseq.as_bytes()).unwrap_err();
        let resp = bad_request(bad_cseq.as_bytes(), &err, "t1").unwrap();
        assert_eq!(resp.status, 400);
        assert_eq!(resp.headers.get("Call-ID"), Some("abc@host"));
        assert_eq!(resp.headers.get("To"), Some("<sip:100@127.0.0.1>;tag=t1"));
        assert!(bad_request(b"SIP/2.0 200 OK\r\n\r\n", &err, "t").is_none());
        assert!(parse(b"").is_err());
    }

    #[test]
    fn unknown_methods_parse_for_a_501() {
        let text = INVITE
            .replace("INVITE sip:", "FROBNICATE sip:")
            .replace("1 INVITE", "1 FROBNICATE");
        let Message::Request(r) = parse(text.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(r.method, Method::Other("FROBNICATE".into()));
        assert_eq!(r.cseq(), Some((1, Method::Other("FROBNICATE".into()))));
        assert!(parse(b"FR<>B sip:x SIP/2.0\r\n\r\n").is_err());
    }

    #[test]
    fn round_trips_through_bytes() {
        let Message::Request(r) = parse(INVITE.as_bytes()).unwrap() else {
            panic!()
        };
        let again = parse(&r.to_bytes()).unwrap();
        assert_eq!(again, Message::Request(r));
    }
}
