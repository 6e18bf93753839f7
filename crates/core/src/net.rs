//! Address classes that matter for where secrets may travel.

use std::net::{IpAddr, Ipv6Addr};

/// Link-local ranges (169.254.0.0/16, fe80::/10), where cloud metadata services answer, and
/// AWS's IPv6 metadata address; also through IPv4-mapped IPv6.
pub fn is_link_local(ip: IpAddr) -> bool {
    const AWS_IPV6_METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_link_local(),
            None => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == AWS_IPV6_METADATA,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_addresses_are_link_local() {
        for ip in [
            "169.254.169.254",
            "fe80::1",
            "::ffff:169.254.1.1",
            "fd00:ec2::254",
        ] {
            assert!(is_link_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "8.8.8.8", "::1", "2001:db8::1"] {
            assert!(!is_link_local(ip.parse().unwrap()), "{ip}");
        }
    }
}
