//! Where a provider key may be sent (SSRF, AV-4): a credential's base URL is `http` or
//! `https`, has no user information, and does not point at link-local or cloud metadata
//! addresses, at loopback or private networks outside `providers.allow_private_networks`, or at
//! the gateway's own listener. Host names are checked again when they resolve, at connect time
//! (`portcullis_providers`), so that DNS cannot point a key elsewhere later.

use std::net::SocketAddr;

use portcullis_core::net::{Destinations, Refused, named_address};
use url::{Host, Url};

/// Why a credential's base URL is refused; each message names `base_url` for the admin who set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedUrl {
    /// Not a URL, or one without a host or a port.
    #[error("base_url is not a valid URL")]
    Invalid,
    /// A scheme other than `http` or `https`.
    #[error("base_url must use http or https")]
    Scheme,
    /// A user name or password in the URL.
    #[error("base_url must not carry a user name or password")]
    Credentials,
    /// A link-local address or cloud metadata host, unless `providers.allow_link_local`.
    #[error("base_url points at a link-local or cloud metadata address")]
    Metadata,
    /// Loopback or a private network outside `providers.allow_private_networks`.
    #[error(
        "base_url points at loopback or a private network: the operator allows such ranges \
         with providers.allow_private_networks"
    )]
    Private,
    /// One of the gateway's own listeners: a request there would come straight back.
    #[error("base_url points at this gateway")]
    Gateway,
}

impl From<Refused> for RefusedUrl {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::LinkLocal => RefusedUrl::Metadata,
            Refused::Private => RefusedUrl::Private,
            Refused::Gateway => RefusedUrl::Gateway,
        }
    }
}

/// Host names that cloud providers answer with instance metadata (and so credentials).
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata",
    "metadata.azure.internal",
    "instance-data",
];

/// Checks a base URL for provider traffic. An address in the URL is checked here; a host
/// name is checked where it resolves.
pub fn check_base_url(text: &str, to: &Destinations) -> Result<Url, RefusedUrl> {
    let url = Url::parse(text).map_err(|_| RefusedUrl::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RefusedUrl::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RefusedUrl::Credentials);
    }
    if let Some(addr) = literal_address(&url)? {
        to.check(addr)?;
    } else if let Some(Host::Domain(name)) = url.host() {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if METADATA_HOSTS.contains(&name.as_str()) && !to.allow_link_local {
            return Err(RefusedUrl::Metadata);
        }
    }
    Ok(url)
}

/// The address a URL names without a resolver (an IP literal or `localhost`), with its port.
pub fn literal_address(url: &Url) -> Result<Option<SocketAddr>, RefusedUrl> {
    let port = url.port_or_known_default().ok_or(RefusedUrl::Invalid)?;
    let host = url.host_str().ok_or(RefusedUrl::Invalid)?;
    Ok(named_address(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_urls_are_checked_for_metadata_and_credentials() {
        let none = Destinations::default();
        assert!(check_base_url("https://api.openai.com/v1", &none).is_ok());
        for (url, refusal) in [
            (
                "http://169.254.169.254/latest/meta-data",
                RefusedUrl::Metadata,
            ),
            ("http://[fe80::1]/", RefusedUrl::Metadata),
            ("http://[::ffff:169.254.169.254]/", RefusedUrl::Metadata),
            ("http://[fd00:ec2::254]/", RefusedUrl::Metadata),
            (
                "http://metadata.google.internal./computeMetadata/v1",
                RefusedUrl::Metadata,
            ),
            ("ftp://example.com", RefusedUrl::Scheme),
            ("file:///etc/passwd", RefusedUrl::Scheme),
            ("https://user:pw@example.com", RefusedUrl::Credentials),
            ("not a url", RefusedUrl::Invalid),
        ] {
            assert_eq!(check_base_url(url, &none).err(), Some(refusal), "{url}");
        }
        let link_local = Destinations {
            allow_link_local: true,
            ..Destinations::default()
        };
        assert!(check_base_url("http://169.254.169.254/", &link_local).is_ok());
    }

    #[test]
    fn av_4_a_loopback_base_url_needs_the_allowlist_and_the_gateway_is_refused() {
        let none = Destinations::default();
        for url in [
            "http://127.0.0.1:11434/v1",
            "http://localhost:8000/v1",
            "http://api.localhost./v1",
            "http://[::1]:8000/v1",
            "http://10.0.0.7/v1",
            "http://[::ffff:192.168.1.1]/v1",
            "http://100.64.1.1/v1",
            "http://[fd00::1]/v1",
            "http://0.0.0.0:8000/v1",
        ] {
            assert_eq!(
                check_base_url(url, &none).err(),
                Some(RefusedUrl::Private),
                "{url}"
            );
        }
        let lab = Destinations {
            allow_private: vec!["127.0.0.0/8".parse().unwrap()],
            own: vec!["127.0.0.1:8080".parse().unwrap()],
            ..Destinations::default()
        };
        assert!(check_base_url("http://127.0.0.1:11434/v1", &lab).is_ok());
        assert!(check_base_url("http://localhost:11434/v1", &lab).is_ok());
        assert_eq!(
            check_base_url("http://localhost:8080/v1", &lab).err(),
            Some(RefusedUrl::Gateway)
        );
        assert_eq!(
            check_base_url("http://10.0.0.7/v1", &lab).err(),
            Some(RefusedUrl::Private)
        );
    }
}
