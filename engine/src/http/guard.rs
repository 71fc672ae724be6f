//! The SSRF guard: outbound requests may only reach public addresses unless private networks
//! are explicitly allowed (`--allow-private-network`, for local development and tests).
//!
//! The check runs on the addresses a host name *resolves to*, inside a custom reqwest resolver
//! that also pins the connection to the checked addresses, so a DNS answer that changes between
//! check and connect (DNS rebinding) cannot slip through. IP-literal hosts never reach a
//! resolver, so [`check_url_host`] checks them before every hop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is not public, or `None` when it is.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "an unspecified (0.0.0.0/8) address",
        [127, ..] => "a loopback address",
        [10, ..] => "a private (10.0.0.0/8) address",
        [172, b, ..] if (16..32).contains(&b) => "a private (172.16.0.0/12) address",
        [192, 168, ..] => "a private (192.168.0.0/16) address",
        [169, 254, 169, 254] => "the cloud metadata address",
        [169, 254, ..] => "a link-local address",
        [100, b, ..] if (64..128).contains(&b) => "a carrier-grade NAT (100.64.0.0/10) address",
        [192, 0, 0, _] => "an IETF protocol assignment (192.0.0.0/24)",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "a documentation address",
        [198, b, ..] if b == 18 || b == 19 => "a benchmarking (198.18.0.0/15) address",
        [a, ..] if a >= 224 => "a multicast, reserved or broadcast address",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("the unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4 address that decides.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let o = ip.octets();
        return v4_reason(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        let o = ip.octets();
        return v4_reason(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "a unique-local (fc00::/7) address",
        x if x & 0xffc0 == 0xfe80 => "a link-local address",
        x if x & 0xff00 == 0xff00 => "a multicast address",
        0x2001 if s[1] == 0x0db8 => "a documentation address",
        0 => "a reserved (::/96 IPv4-compatible) address",
        _ => return None,
    })
}

/// Addresses that are never reachable, even when private networks are allowed.
fn never_allowed(ip: IpAddr) -> bool {
    ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST)
}

/// Whether a connection to `ip` is allowed; `Err` says why not.
pub fn check_ip(ip: IpAddr, allow_private: bool) -> Result<(), String> {
    if never_allowed(ip) {
        return Err(format!("{ip} is {}", non_public_reason(ip).unwrap_or("not routable")));
    }
    match non_public_reason(ip) {
        Some(reason) if !allow_private => Err(format!(
            "{ip} is {reason}; private networks are denied (use --allow-private-network or TERN_ALLOW_PRIVATE_NETWORK=1 for local development)"
        )),
        _ => Ok(()),
    }
}

/// Checks a URL whose host is an IP literal (resolvers never see those). Host names pass here
/// and are checked by [`GuardedResolver`] when the connection is made.
pub fn check_url_host(url: &url::Url, allow_private: bool) -> Result<(), String> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), allow_private),
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), allow_private),
        Some(url::Host::Domain(_)) => Ok(()),
        None => Err("the URL has no host".into()),
    }
}

/// The error a [`GuardedResolver`] returns; the HTTP client finds it in reqwest's error chain
/// to report a denial instead of a generic connection error.
#[derive(Debug, thiserror::Error)]
#[error("{host}: {reason}")]
pub struct Denied {
    /// The host name that was looked up.
    pub host: String,
    /// Why every address was refused.
    pub reason: String,
}

/// A DNS resolver that drops denied addresses and fails when none is left.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    /// Allow private, loopback and link-local addresses.
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut reasons = Vec::new();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match check_ip(a.ip(), allow_private) {
                    Ok(()) => true,
                    Err(r) => {
                        reasons.push(r);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let reason = reasons.into_iter().next().unwrap_or_else(|| "no addresses".into());
                return Err(Box::new(Denied { host, reason }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(s: &str) -> bool {
        check_ip(s.parse().unwrap(), false).is_err()
    }

    #[test]
    fn classifies_addresses() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(denied(s), "{s} should be denied");
        }
        for s in ["8.8.8.8", "172.32.0.1", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!denied(s), "{s} should be allowed");
        }
    }

    #[test]
    fn allow_private_still_denies_unroutable() {
        assert!(check_ip("127.0.0.1".parse().unwrap(), true).is_ok());
        assert!(check_ip("0.0.0.0".parse().unwrap(), true).is_err());
        assert!(check_ip("ff02::1".parse().unwrap(), true).is_err());
    }

    #[test]
    fn metadata_reason_is_named() {
        let e = check_ip("169.254.169.254".parse().unwrap(), false).unwrap_err();
        assert!(e.contains("metadata"), "{e}");
    }
}
