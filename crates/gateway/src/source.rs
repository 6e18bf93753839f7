//! The one client-source extractor (AU-2): the client IP is the socket peer, or, only when the
//! peer is a configured trusted proxy, the nearest untrusted address of `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;
use portcullis_core::audit::Source;

use crate::request_id::RequestId;
use crate::state::AppState;

const MAX_USER_AGENT: usize = 512;

/// The source of the request being handled, for audit entries.
#[derive(Debug, Clone)]
pub struct ClientSource(pub Source);

impl FromRequestParts<AppState> for ClientSource {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(source_of(parts, &state.trusted_proxies)))
    }
}

pub fn source_of(parts: &Parts, trusted: &[IpNet]) -> Source {
    // As axum's `ConnectInfo` extractor does: the real peer, or the one tests mock.
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .or_else(|| {
            parts
                .extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|MockConnectInfo(addr)| addr.ip())
        });
    Source {
        client_ip: peer.map(|peer| client_ip(peer, &parts.headers, trusted)),
        user_agent: parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect()),
        request_id: parts.extensions.get::<RequestId>().map(|id| id.0.clone()),
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Walks `X-Forwarded-For` from the right (the hop nearest to us) past trusted proxies; the
/// first untrusted address is the client. An unparsable entry stops the walk: nothing left of
/// it can be believed.
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return canonical(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = canonical(peer);
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = canonical(ip);
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        headers
    }

    #[test]
    fn au_2_forwarded_for_counts_only_from_a_trusted_peer() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let spoof = headers("198.51.100.7");
        let untrusted_peer: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(client_ip(untrusted_peer, &spoof, &trusted), untrusted_peer);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &spoof, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn au_2_the_nearest_untrusted_hop_wins_over_a_spoofed_left_part() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let chain = headers("1.1.1.1, 198.51.100.7, 10.0.0.2");
        assert_eq!(
            client_ip(proxy, &chain, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let garbage = headers("nonsense, 10.0.0.2");
        assert_eq!(
            client_ip(proxy, &garbage, &trusted),
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &headers("192.0.2.9"), &trusted),
            "192.0.2.9".parse::<IpAddr>().unwrap()
        );
    }
}
