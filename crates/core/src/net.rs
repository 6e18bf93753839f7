//! Address classes that matter for where secrets may travel, and the operator's rules for
//! where provider keys may be sent (AV-4).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Link-local ranges (169.254.0.0/16, fe80::/10), where cloud metadata services answer, and
/// AWS's IPv6 metadata address; also through IPv4-mapped IPv6.
pub fn is_link_local(ip: IpAddr) -> bool {
    const AWS_IPV6_METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match carried_v4(ip) {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == AWS_IPV6_METADATA,
    }
}

/// Addresses of this host or its private networks: loopback, unspecified, "this network"
/// (0.0.0.0/8), RFC 1918, carrier-grade NAT (100.64.0.0/10) and unique local IPv6 (fc00::/7);
/// also through IPv4-mapped IPv6.
/// Also: benchmarking (198.18.0.0/15), IETF protocol assignments (192.0.0.0/24), reserved
/// (240.0.0.0/4), IPv6 site-local (fec0::/10), and IPv4 inside IPv6 (mapped, compatible,
/// NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16) as the IPv4 address it carries.
pub fn is_private(ip: IpAddr) -> bool {
    match carried_v4(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
                || (a == 198 && (b & 0xfe) == 18)
                || (a == 192 && b == 0 && c == 0)
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfec0
        }
    }
}

/// The IPv4 address an IPv6 address carries, if it carries one; else the address itself.
fn carried_v4(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip.to_canonical() else {
        return ip.to_canonical();
    };
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0; 4] || s[2] == 1);
    let compatible = s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified();
    if nat64 || compatible {
        return IpAddr::V4(low);
    }
    if s[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    IpAddr::V6(v6)
}

/// Why an address may not receive a provider request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Link-local or cloud metadata, unless `providers.allow_link_local`.
    LinkLocal,
    /// Loopback or a private network outside `providers.allow_private_networks`.
    Private,
    /// The gateway's own listener: a request there comes straight back.
    Gateway,
}

/// Where provider requests may go: the operator's choices and the gateway's own listeners.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    /// Link-local and cloud metadata addresses are allowed too (`providers.allow_link_local`).
    pub allow_link_local: bool,
    /// Private ranges provider base URLs may name (`providers.allow_private_networks`).
    pub allow_private: Vec<IpNet>,
    /// Where this gateway listens.
    pub own: Vec<SocketAddr>,
}

impl Destinations {
    /// Whether a host address may receive provider requests, on any port.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = ip.to_canonical();
        if is_link_local(ip) {
            return if self.allow_link_local {
                Ok(())
            } else {
                Err(Refused::LinkLocal)
            };
        }
        if is_private(ip) && !self.allow_private.iter().any(|net| net.contains(&ip)) {
            return Err(Refused::Private);
        }
        Ok(())
    }

    /// Not one of the gateway's own listeners, and [`Self::check_ip`].
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refused> {
        let ip = addr.ip().to_canonical();
        let this_host = |own: IpAddr| {
            ip == own
                || ((own.is_unspecified() || own.is_loopback())
                    && (ip.is_loopback() || ip.is_unspecified()))
        };
        if self
            .own
            .iter()
            .any(|own| own.port() == addr.port() && this_host(own.ip().to_canonical()))
        {
            return Err(Refused::Gateway);
        }
        self.check_ip(addr.ip())
    }
}

/// The address a URL's host names without a resolver: an IP literal (IPv6 in brackets, as
/// URLs write it), or `localhost` and its subdomains, which are this host whatever DNS says.
/// `None` for other host names.
pub fn named_address(host: &str, port: u16) -> Option<SocketAddr> {
    let host = host.trim_end_matches('.');
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let lower = host.to_ascii_lowercase();
    (lower == "localhost" || lower.ends_with(".localhost"))
        .then_some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn av_4_private_networks_need_the_allowlist_and_the_gateway_is_never_a_destination() {
        let none = Destinations::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "::1",
            "::",
            "fd12:3456::1",
            "fc00::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:5",
            "64:ff9b:1::a00:5",
            "::10.0.0.5",
            "2002:a00:5::1",
            "fec0::1",
            "198.18.0.1",
            "240.0.0.1",
        ] {
            assert_eq!(
                none.check_ip(ip.parse().unwrap()),
                Err(Refused::Private),
                "{ip}"
            );
        }
        for ip in [
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "fe00::1",
        ] {
            assert_eq!(none.check_ip(ip.parse().unwrap()), Ok(()), "{ip}");
        }
        assert_eq!(
            none.check_ip("169.254.169.254".parse().unwrap()),
            Err(Refused::LinkLocal)
        );
        let lab = Destinations {
            allow_private: vec![
                "127.0.0.0/8".parse().unwrap(),
                "10.0.0.0/16".parse().unwrap(),
            ],
            own: vec!["0.0.0.0:8080".parse().unwrap()],
            ..Destinations::default()
        };
        assert_eq!(lab.check("127.0.0.1:11434".parse().unwrap()), Ok(()));
        assert_eq!(lab.check("10.0.9.9:443".parse().unwrap()), Ok(()));
        assert_eq!(
            lab.check("10.1.0.1:443".parse().unwrap()),
            Err(Refused::Private)
        );
        assert_eq!(
            lab.check("127.0.0.1:8080".parse().unwrap()),
            Err(Refused::Gateway)
        );
        assert_eq!(
            lab.check("[::ffff:127.0.0.1]:8080".parse().unwrap()),
            Err(Refused::Gateway)
        );
        // Another host's port 8080 is not this gateway.
        assert_eq!(lab.check("10.0.0.5:8080".parse().unwrap()), Ok(()));
    }

    #[test]
    fn metadata_addresses_are_link_local() {
        for ip in [
            "169.254.169.254",
            "fe80::1",
            "::ffff:169.254.1.1",
            "fd00:ec2::254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_link_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "8.8.8.8", "::1", "2001:db8::1"] {
            assert!(!is_link_local(ip.parse().unwrap()), "{ip}");
        }
    }
}
