//! Which registries are reached over plain http, decided as the Docker
//! engine decides it (moby `registry/config.go`, `isSecureIndex`): a
//! registry named in `insecure-registries` is insecure; Docker Hub's index
//! is configured secure and stays so; any other registry is insecure when
//! its host, or an address its host name resolves to, lies in one of the
//! insecure CIDR ranges, which always hold the loopback ones.
//!
//! The ranges are matched here rather than with a crate: a prefix compare
//! is a few lines, and Go's `IPNet.Contains` rules (an IPv4-mapped IPv6
//! address is its IPv4 address; the families never match each other) are
//! the ones to follow.

use std::net::IpAddr;
use std::time::Duration;

/// Docker's own insecure ranges, added to whatever the daemon is told.
const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// Names Docker Hub's index goes by: secure whatever the ranges say.
const HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// The engine's insecure registries.
#[derive(Clone, Debug)]
pub(super) struct Insecure {
    /// `host[:port]` entries, matched as they are written.
    names: Vec<String>,
    ranges: Vec<Cidr>,
}

impl Insecure {
    /// From entries as `insecure-registries` takes them: CIDR ranges
    /// (`10.0.0.0/8`) and `host[:port]` names.
    pub(super) fn new(entries: &[String]) -> Self {
        let mut names = Vec::new();
        let mut ranges: Vec<Cidr> = LOOPBACK.iter().filter_map(|c| Cidr::parse(c)).collect();
        for e in entries {
            match Cidr::parse(e) {
                Some(c) => ranges.push(c),
                None => names.push(e.clone()),
            }
        }
        Self { names, ranges }
    }

    /// Whether `registry` (`host[:port]`) is insecure. A host name is
    /// resolved, as Docker resolves it, within `deadline`; one that does not
    /// resolve matches no range.
    pub(super) async fn contains(&self, registry: &str, deadline: Duration) -> bool {
        if self.names.iter().any(|n| n == registry) {
            return true;
        }
        let host = host_of(registry);
        if HUB.contains(&host) {
            return false;
        }
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            // Resolved by every system, and loopback by definition.
            Err(_) if host == "localhost" => return true,
            Err(_) => {
                match tokio::time::timeout(deadline, tokio::net::lookup_host((host, 0))).await {
                    Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                    _ => Vec::new(),
                }
            }
        };
        addrs
            .iter()
            .any(|a| self.ranges.iter().any(|r| r.contains(*a)))
    }
}

/// The host of `host[:port]` or `[v6]:port`.
fn host_of(registry: &str) -> &str {
    match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None if registry.matches(':').count() > 1 => registry,
        None => registry.split(':').next().unwrap_or(registry),
    }
}

/// An address range, `address/prefix-length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u32,
}

impl Cidr {
    /// `a.b.c.d/n` or `v6::addr/n`, as Go's `net.ParseCIDR` takes them.
    fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = s.trim().split_once('/')?;
        let net: IpAddr = addr.parse().ok()?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u32 = prefix.parse().ok()?;
        let bits = if net.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Self { net, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, addr, bits) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n) as u128, u32::from(a) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        let shift = bits - self.prefix;
        shift >= bits || (net >> shift) == (addr >> shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_like_go_ipnet() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.200.3.4")));
        assert!(!c.contains(ip("11.0.0.1")));
        // An IPv4-mapped IPv6 address is its IPv4 address.
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(!c.contains(ip("fd00::1")));
        // The host bits of the written address do not matter.
        assert!(Cidr::parse("192.168.1.77/24")
            .unwrap()
            .contains(ip("192.168.1.3")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        let v6 = Cidr::parse("fd00:ab::/32").unwrap();
        assert!(v6.contains(ip("fd00:ab:1::5")));
        assert!(!v6.contains(ip("fd00:ac::5")));
        assert!(Cidr::parse("10.1.2.3/32").unwrap().contains(ip("10.1.2.3")));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "::/129",
            "reg:5000",
            "a/8",
            "10.0.0.0/+8",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn names_ranges_loopback_and_the_hub() {
        let d = Duration::from_secs(5);
        let i = Insecure::new(&[
            "reg.internal:5000".into(),
            "10.0.0.0/8".into(),
            "fd00::/8".into(),
        ]);
        for yes in [
            "reg.internal:5000",
            "10.1.2.3:5000",
            "10.1.2.3",
            "[fd00::7]:443",
            "127.0.0.1:5000",
            "127.3.2.1",
            "localhost:5001",
            "[::1]:5000",
        ] {
            assert!(i.contains(yes, d).await, "{yes}");
        }
        for no in [
            "reg.internal:5001",
            "11.0.0.1:5000",
            "[fe80::1]:5000",
            "128.0.0.1:5000",
            "registry-1.docker.io",
            "docker.io",
        ] {
            assert!(!i.contains(no, d).await, "{no}");
        }
        // Even a range holding every address leaves Docker Hub secure.
        let all = Insecure::new(&["0.0.0.0/0".into()]);
        assert!(!all.contains("registry-1.docker.io", d).await);
        assert!(all.contains("203.0.113.9:5000", d).await);
    }
}
