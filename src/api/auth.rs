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
    /// The token it came with (none: a public page on this machine).
    token: Option<Secret>,
}

/// A token kept to check it again later; never shown.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl Caller {
    /// Whether `config` still has the token this caller came with (a
    /// reload may have removed or changed it): a stream it opened ends
    /// when not.
    pub fn still_valid(&self, config: &crate::config::Config) -> bool {
        self.token.as_ref().is_none_or(|t| {
            config
                .http
                .tokens
                .iter()
                .any(|c| same(c.token.as_bytes(), t.0.as_bytes()) && c.role >= self.role)
        })
    }

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

/// Routes a browser opens as a page or a stream (and so what a page of
/// another site could make it open).
fn browser_route(path: &str) -> bool {
    matches!(path, "/api/events" | "/events") || public_page(path) == Some(PublicPage::Wallboard)
}

/// Why a request a browser may have sent on another site's behalf is
/// refused, if it is. `Origin`, when present, must be this server's own
/// (the `Host` it was sent to) or one of `http.origins`. On the pages and
/// streams (and whatever is served without a token), `Host` must name this
/// server: an IP address, `localhost` or one of `http.hosts`, so a name
/// rebound to this address (DNS rebinding) gets nothing.
pub(super) fn refusal(
    http: &crate::config::HttpConfig,
    host: Option<&str>,
    origin: Option<&str>,
    checks_host: bool,
) -> Option<&'static str> {
    if let Some(origin) = origin {
        let own = host.is_some_and(|h| {
            ["http://", "https://"].iter().any(|scheme| {
                origin
                    .strip_prefix(scheme)
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(h))
            })
        });
        let listed = http
            .origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin));
        if !own && !listed {
            return Some("a page of another origin may not use this server (see http.origins)");
        }
    }
    if checks_host {
        if let Some(host) = host {
            let name = match host.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => host.rsplit_once(':').map_or(host, |(h, _)| h),
            };
            let ours = name.parse::<std::net::IpAddr>().is_ok()
                || name.eq_ignore_ascii_case("localhost")
                || http.hosts.iter().any(|h| h.eq_ignore_ascii_case(name));
            if !ours {
                return Some("this server does not answer to that host name (see http.hosts)");
            }
        }
    }
    None
}

pub async fn check(State(state): State<Arc<ApiState>>, mut req: Request, next: Next) -> Response {
    // Pages configured public are served to clients on this machine.
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    let (public, refused) = {
        let path = req.uri().path();
        let config = state.config();
        let public = loopback && public_page(path).is_some_and(|p| config.http.public.contains(&p));
        let headers = req.headers();
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let refused = refusal(
            &config.http,
            text(header::HOST),
            text(header::ORIGIN),
            public || browser_route(path),
        );
        (public, refused)
    };
    if let Some(why) = refused {
        ::metrics::counter!("hotline_http_requests_refused_total", "reason" => "origin")
            .increment(1);
        return error(StatusCode::FORBIDDEN, why, None);
    }
    if public {
        req.extensions_mut().insert(Caller {
            name: "public".into(),
            role: Role::Read,
            token: None,
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
    let config = state.config();
    let found = config
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
                token: Some(Secret(t.token.clone())),
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
    use crate::config::HttpConfig;

    #[test]
    fn pages_of_other_origins_and_other_host_names_are_refused() {
        let mut http = HttpConfig::default();
        let refused = |http: &HttpConfig, host, origin, page| {
            super::refusal(http, host, origin, page).is_some()
        };
        // A script, a same-origin page, a page on loopback by name.
        assert!(!refused(&http, Some("127.0.0.1:8080"), None, true));
        assert!(!refused(
            &http,
            Some("127.0.0.1:8080"),
            Some("http://127.0.0.1:8080"),
            true
        ));
        assert!(!refused(
            &http,
            Some("localhost:8080"),
            Some("http://localhost:8080"),
            true
        ));
        assert!(!refused(
            &http,
            Some("[::1]:8080"),
            Some("http://[::1]:8080"),
            true
        ));
        assert!(!refused(&http, None, None, true));
        // Another site's page, or a sandboxed one.
        assert!(refused(
            &http,
            Some("127.0.0.1:8080"),
            Some("http://evil.example"),
            true
        ));
        assert!(refused(
            &http,
            Some("127.0.0.1:8080"),
            Some("http://127.0.0.1:9999"),
            false
        ));
        assert!(refused(&http, Some("127.0.0.1:8080"), Some("null"), true));
        // DNS rebinding: the page's own origin, under a name that is not ours.
        assert!(refused(
            &http,
            Some("evil.example:8080"),
            Some("http://evil.example:8080"),
            true
        ));
        assert!(refused(&http, Some("evil.example:8080"), None, true));
        // A scraper using a name, with its token, on the API.
        assert!(!refused(&http, Some("hotline.internal:8080"), None, false));
        // Listed names and origins.
        http.hosts.push("wall.example.com".into());
        http.origins.push("https://ops.example.com".into());
        assert!(!refused(
            &http,
            Some("WALL.example.com"),
            Some("http://wall.example.com"),
            true
        ));
        assert!(!refused(
            &http,
            Some("127.0.0.1:8080"),
            Some("https://ops.example.com"),
            true
        ));
        assert!(refused(
            &http,
            Some("127.0.0.1:8080"),
            Some("http://ops.example.com"),
            true
        ));
    }

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
