//! The HTTP adapter `api_call` steps send through: [`ReqwestHttp`], a [`HttpPort`] over one
//! shared reqwest client (rustls).
//!
//! It enforces what a workflow author must not be able to get around:
//! - only `http` and `https` URLs;
//! - a host policy ([`HttpSettings`]): `allow_hosts` (when non-empty, only these hosts),
//!   `deny_hosts` (always refused), and `deny_private_networks`, which refuses loopback,
//!   private (RFC 1918), shared (100.64/10), link-local (169.254/16, where cloud metadata
//!   services live), unspecified, broadcast and multicast IPv4 addresses, and loopback,
//!   unique-local (fc00::/7), link-local (fe80::/10), site-local, unspecified and multicast
//!   IPv6 addresses (IPv4-mapped, -compatible and NAT64 forms are judged by the IPv4 address
//!   inside). The addresses checked are the ones connected to: an IP-literal URL's, or what
//!   the name resolves to (a resolver of our own drops refused addresses, so a name cannot
//!   smuggle in a private address, and DNS answers cannot change between check and use).
//!   Recommended in production: `--http-deny-private-networks`;
//! - redirects followed up to [`MAX_REDIRECTS`], the scheme and host policy checked again on
//!   every hop;
//! - a per-request timeout covering the whole exchange, and a response size limit
//!   (`max_response_bytes`, default 10 MiB) enforced while reading, chunk by chunk.
//!
//! When traces are exported, each request carries a W3C `traceparent` naming the current
//! (`http.call`) span, unless the step sets that header itself.
//!
//! Host entries are names or IP literals, compared case-insensitively; an entry starting with
//! `.` (or `*.`) matches that domain and every name under it (`.example.com` matches
//! `example.com` and `api.example.com`). System proxy settings are ignored (a proxy would
//! resolve names where the policy cannot see them).
//!
//! Failures are classified for the step's retry logic: timeouts → [`HttpError::Timeout`],
//! connection and DNS failures → [`HttpError::Connect`], policy → [`HttpError::Refused`], a
//! body over the limit → [`HttpError::TooLarge`], anything else → [`HttpError::Other`].
//! Messages never carry the URL (its query may hold secrets).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use scaff_core::http::{HttpError, HttpPort, HttpRequest, HttpResponse};

/// The default response size limit: 10 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 10 * 1024 * 1024;

/// The most redirects one request follows.
pub const MAX_REDIRECTS: usize = 5;

/// How long to wait for a TCP/TLS connection (the request's own timeout bounds it too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `api_call` requests may reach, and how much they may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// When non-empty, only these hosts (or domains, `.example.com`) may be called.
    pub allow_hosts: Vec<String>,
    /// Hosts (or domains) never called; wins over `allow_hosts`.
    pub deny_hosts: Vec<String>,
    /// Refuse loopback, private, link-local and similar addresses (SSRF protection;
    /// recommended in production).
    pub deny_private_networks: bool,
    /// Largest response body read, in bytes.
    pub max_response_bytes: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            deny_private_networks: false,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// Why the policy refused a request (travels through reqwest's error chain as the source).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// The scheme and host rules of [`HttpSettings`], checked before sending, on every redirect
/// and on every resolved address.
#[derive(Debug, Clone)]
struct HostPolicy {
    allow: Vec<String>,
    deny: Vec<String>,
    deny_private: bool,
}

impl HostPolicy {
    fn new(settings: &HttpSettings) -> Self {
        let norm = |list: &[String]| {
            list.iter()
                .map(|h| normalize_host(h.trim()))
                .filter(|h| !h.is_empty())
                .collect()
        };
        Self {
            allow: norm(&settings.allow_hosts),
            deny: norm(&settings.deny_hosts),
            deny_private: settings.deny_private_networks,
        }
    }

    /// Checks a URL's scheme, its host against the lists and, for an IP literal, its address.
    fn check_url(&self, url: &Url) -> Result<(), PolicyError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PolicyError(format!(
                "scheme `{}` is not allowed (only http and https)",
                url.scheme()
            )));
        }
        let Some(host) = url.host_str() else {
            return Err(PolicyError("the URL has no host".into()));
        };
        let host = normalize_host(host);
        if self.deny.iter().any(|e| host_matches(e, &host)) {
            return Err(PolicyError(format!("host `{host}` is denied")));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|e| host_matches(e, &host)) {
            return Err(PolicyError(format!(
                "host `{host}` is not in the allowed hosts"
            )));
        }
        // The URL parser has normalized IP literals (`2130706433` is `127.0.0.1`).
        if let Ok(ip) = host.parse::<IpAddr>()
            && !self.address_allowed(ip)
        {
            return Err(PolicyError(format!(
                "address {ip} is in a private or link-local network"
            )));
        }
        Ok(())
    }

    fn address_allowed(&self, ip: IpAddr) -> bool {
        !(self.deny_private && is_private(ip))
    }
}

/// Lower-case, without a trailing dot or IPv6 brackets.
fn normalize_host(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .map(str::to_string)
        .unwrap_or(host)
}

/// Whether the (normalized) `entry` matches `host`: exactly, or, for `.domain` / `*.domain`,
/// the domain itself and any name under it.
fn host_matches(entry: &str, host: &str) -> bool {
    match entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
        Some(domain) => {
            host == domain
                || (host.len() > domain.len()
                    && host.ends_with(domain)
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
        }
        None => host == entry,
    }
}

/// Whether `ip` is an address an outside-facing request must not reach when private networks
/// are denied.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // Shared address space (carrier-grade NAT; some clouds' metadata services).
        || (a == 100 && (64..128).contains(&b))
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_private_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::a.b.c.d).
    let embedded = || Ipv4Addr::from(((u32::from(s[6])) << 16) | u32::from(s[7]));
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0) {
        return is_private_v4(embedded());
    }
    if s[..6].iter().all(|x| *x == 0) && !ip.is_loopback() && !ip.is_unspecified() {
        return is_private_v4(embedded());
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
}

/// Resolves names with tokio and drops the addresses the policy refuses.
struct PolicyResolver {
    policy: Arc<HostPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let policy = self.policy.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.address_allowed(a.ip()))
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(Box::new(PolicyError(format!(
                    "`{host}` resolves only to private or link-local addresses"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The [`HttpPort`] over reqwest, with the policy of [`HttpSettings`].
pub struct ReqwestHttp {
    client: reqwest::Client,
    policy: Arc<HostPolicy>,
    max_response_bytes: u64,
}

impl ReqwestHttp {
    /// A client enforcing `settings`.
    pub fn new(settings: &HttpSettings) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(HostPolicy::new(settings));
        let on_redirect = policy.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(PolicyRedirects);
            }
            // Only same-origin redirects are followed: reqwest re-sends every header but the
            // few it knows to be sensitive, so a step's `X-Api-Key: {{ secrets.k }}` would
            // otherwise reach whatever host the server points at. Others end the request
            // with the 3xx response itself.
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if !same_origin {
                return attempt.stop();
            }
            match on_redirect.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(concat!("scaff/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(redirects)
            .dns_resolver(PolicyResolver {
                policy: policy.clone(),
            })
            .no_proxy()
            .build()?;
        Ok(Self {
            client,
            policy,
            max_response_bytes: settings.max_response_bytes,
        })
    }

    async fn exchange(
        &self,
        builder: reqwest::RequestBuilder,
        timeout: Duration,
        head: bool,
    ) -> Result<HttpResponse, HttpError> {
        let mut response = builder.send().await.map_err(|e| classify(&e, timeout))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let limit = self.max_response_bytes;
        if !head && response.content_length().is_some_and(|n| n > limit) {
            return Err(HttpError::TooLarge(limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, timeout))? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(HttpError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// Too many redirects (a marker in the error chain).
#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_REDIRECTS} redirects")]
struct PolicyRedirects;

#[async_trait]
impl HttpPort for ReqwestHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url =
            Url::parse(&request.url).map_err(|e| HttpError::Other(format!("invalid URL: {e}")))?;
        self.policy
            .check_url(&url)
            .map_err(|e| HttpError::Refused(e.0))?;
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HttpError::Other(format!("invalid method `{}`", request.method)))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::Other(format!("invalid header name `{name}`")))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| HttpError::Other(format!("header `{name}` has an invalid value")))?;
            headers.append(n, v);
        }
        // W3C trace context of the `http.call` span, unless the step sets its own.
        if !headers.contains_key("traceparent")
            && let Some(traceparent) = crate::telemetry::current_traceparent()
            && let Ok(v) = HeaderValue::from_str(&traceparent)
        {
            headers.insert("traceparent", v);
        }
        let head = method == Method::HEAD;
        let mut builder = self
            .client
            .request(method, url)
            .headers(headers)
            .timeout(request.timeout);
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        match tokio::time::timeout(
            request.timeout,
            self.exchange(builder, request.timeout, head),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(request.timeout)),
        }
    }
}

/// A reqwest error as an [`HttpError`], without the URL.
fn classify(error: &reqwest::Error, timeout: Duration) -> HttpError {
    let mut source = std::error::Error::source(error);
    let mut detail = Vec::new();
    while let Some(e) = source {
        if let Some(p) = e.downcast_ref::<PolicyError>() {
            return HttpError::Refused(p.0.clone());
        }
        if e.downcast_ref::<PolicyRedirects>().is_some() {
            return HttpError::Other(e.to_string());
        }
        let text = e.to_string();
        if !text.is_empty() && detail.last() != Some(&text) {
            detail.push(text);
        }
        source = e.source();
    }
    if error.is_timeout() {
        return HttpError::Timeout(timeout);
    }
    let message = if detail.is_empty() {
        kind_of(error).to_string()
    } else {
        format!("{}: {}", kind_of(error), detail.join(": "))
    };
    if error.is_connect() || error.is_request() || error.is_body() {
        HttpError::Connect(message)
    } else {
        HttpError::Other(message)
    }
}

fn kind_of(error: &reqwest::Error) -> &'static str {
    if error.is_connect() {
        "connecting failed"
    } else if error.is_body() {
        "reading the response failed"
    } else if error.is_request() {
        "sending the request failed"
    } else if error.is_redirect() {
        "following a redirect failed"
    } else {
        "the request failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str], private: bool) -> HostPolicy {
        HostPolicy::new(&HttpSettings {
            allow_hosts: allow.iter().map(|s| s.to_string()).collect(),
            deny_hosts: deny.iter().map(|s| s.to_string()).collect(),
            deny_private_networks: private,
            ..HttpSettings::default()
        })
    }

    fn check(p: &HostPolicy, url: &str) -> Result<(), PolicyError> {
        p.check_url(&Url::parse(url).expect("url"))
    }

    #[test]
    fn only_http_and_https_are_allowed() {
        let p = policy(&[], &[], false);
        assert!(check(&p, "http://example.com/").is_ok());
        assert!(check(&p, "https://example.com/").is_ok());
        assert!(check(&p, "ftp://example.com/").is_err());
        assert!(check(&p, "file:///etc/passwd").is_err());
    }

    #[test]
    fn allow_and_deny_lists_match_hosts_and_domains() {
        let p = policy(
            &[".example.com", "api.other.org"],
            &["bad.example.com"],
            false,
        );
        assert!(check(&p, "https://example.com/").is_ok());
        assert!(check(&p, "https://a.b.EXAMPLE.com./").is_ok());
        assert!(check(&p, "https://api.other.org/").is_ok());
        assert!(check(&p, "https://notexample.com/").is_err());
        assert!(check(&p, "https://x.api.other.org/").is_err());
        assert!(check(&p, "https://bad.example.com/").is_err());
        let p = policy(&[], &["*.internal", "[::1]"], false);
        assert!(check(&p, "http://db.internal/").is_err());
        assert!(check(&p, "http://[::1]:8080/").is_err());
        assert!(check(&p, "http://example.com/").is_ok());
    }

    #[test]
    fn private_literals_are_refused_when_denied() {
        let p = policy(&[], &[], true);
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0/",
            "http://100.100.100.200/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
        ] {
            assert!(check(&p, url).is_err(), "{url}");
        }
        for url in ["http://93.184.216.34/", "http://[2606:4700::1111]/"] {
            assert!(check(&p, url).is_ok(), "{url}");
        }
        assert!(check(&policy(&[], &[], false), "http://127.0.0.1/").is_ok());
    }
}
