//! Bearer tokens: which token, which role. Tokens are compared in constant
//! time and never logged.

use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::routes::error;
use super::ApiState;
use crate::config::{PublicPage, Role};

/// The caller of a request, once its token checked out.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// `Err` (403) unless the token's role is at least `role`. (The error
    /// is the response itself: handlers return it as it is.)
    #[allow(clippy::result_large_err)]
    pub fn needs(&self, role: Role) -> Result<(), Response> {
        if self.role >= role {
            Ok(())
        } else {
            Err(error(
                StatusCode::FORBIDDEN,
                &format!("this needs a token with the role {role:?} or above"),
                None,
            ))
        }
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The page a path belongs to, if it is one that may be public.
fn public_page(path: &str) -> Option<PublicPage> {
    match path {
        "/metrics" => Some(PublicPage::Metrics),
        p if p == "/wallboard" || p.starts_with("/wallboard/") => Some(PublicPage::Wallboard),
        _ => None,
    }
}

pub async fn check(State(state): State<Arc<ApiState>>, mut req: Request, next: Next) -> Response {
    // Pages configured public are served to clients on this machine.
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    if loopback
        && public_page(req.uri().path()).is_some_and(|p| state.config.http.public.contains(&p))
    {
        req.extensions_mut().insert(Caller {
            name: "public".into(),
            role: Role::Read,
        });
        return next.run(req).await;
    }
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    // A wall screen opens a URL and cannot set headers (nor can
    // EventSource): the wallboard takes its token from `?token=` too.
    let from_query = (public_page(req.uri().path()) == Some(PublicPage::Wallboard))
        .then(|| {
            req.uri().query()?.split('&').find_map(|kv| {
                let v = kv.strip_prefix("token=")?;
                Some(percent_decode(v))
            })
        })
        .flatten();
    let given = from_header.or(from_query);
    let given = given.as_deref();
    let Some(given) = given else {
        return unauthorized("an Authorization: Bearer TOKEN header is needed");
    };
    let found = state
        .config
        .http
        .tokens
        .iter()
        // Every token is compared, so the time taken tells nothing.
        .fold(None, |found, t| {
            if same(t.token.as_bytes(), given.as_bytes()) {
                Some(t)
            } else {
                found
            }
        });
    match found {
        Some(t) => {
            req.extensions_mut().insert(Caller {
                name: t.name.clone(),
                role: t.role,
            });
            next.run(req).await
        }
        None => unauthorized("the token is not valid"),
    }
}

/// `%XX` escapes and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unauthorized(why: &str) -> Response {
    let mut resp = error(StatusCode::UNAUTHORIZED, why, None).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_decoded_and_a_bad_escape_is_kept() {
        assert_eq!(super::percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(super::same(b"secret", b"secret"));
        assert!(!super::same(b"secret", b"secreT"));
        assert!(!super::same(b"secret", b"secret2"));
    }
}
