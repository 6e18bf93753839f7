//! Where a provider key may be sent (SSRF): a credential's base URL is `http` or `https`, has
//! no user information, and does not point at link-local or cloud metadata addresses unless
//! the operator allows it. Host names are checked again when they resolve, at connect time
//! (`portcullis_providers`), so that DNS cannot point a key at a metadata service later.

use std::net::IpAddr;

use portcullis_core::net::is_link_local;
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedUrl {
    #[error("base_url is not a valid URL")]
    Invalid,
    #[error("base_url must use http or https")]
    Scheme,
    #[error("base_url must not carry a user name or password")]
    Credentials,
    #[error("base_url points at a link-local or cloud metadata address")]
    Metadata,
}

/// Host names that cloud providers answer with instance metadata (and so credentials).
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata",
    "metadata.azure.internal",
    "instance-data",
];

/// Checks a base URL for provider traffic.
pub fn check_base_url(text: &str, allow_link_local: bool) -> Result<Url, RefusedUrl> {
    let url = Url::parse(text).map_err(|_| RefusedUrl::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RefusedUrl::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RefusedUrl::Credentials);
    }
    let metadata = match url.host() {
        None => return Err(RefusedUrl::Invalid),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            METADATA_HOSTS.contains(&name.as_str())
        }
        Some(Host::Ipv4(ip)) => is_link_local(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => is_link_local(IpAddr::V6(ip)),
    };
    if metadata && !allow_link_local {
        return Err(RefusedUrl::Metadata);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_urls_are_checked_for_metadata_and_credentials() {
        assert!(check_base_url("https://api.openai.com/v1", false).is_ok());
        assert!(check_base_url("http://127.0.0.1:11434/v1", false).is_ok());
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
            assert_eq!(check_base_url(url, false).err(), Some(refusal), "{url}");
        }
        assert!(check_base_url("http://169.254.169.254/", true).is_ok());
    }
}
