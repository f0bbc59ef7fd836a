//! Which address a request comes from, for the per-IP rules.
//!
//! The TCP peer, unless that peer is a reverse proxy the operator trusts
//! (`--trusted-proxy`, none by default). Behind such proxies the client is the
//! right-most address of `X-Forwarded-For` that is not itself a trusted proxy: each
//! proxy appends the address it received the request from, so the entries to the right
//! were written by our own proxies, and everything to the left of the first untrusted
//! one was written by the client, which can claim anything there. Headers sent more
//! than once are read as one list, in order (RFC 9110 section 5.3).
//!
//! Without a trusted proxy the header is ignored entirely: trusting it from anyone
//! would let every request name a fresh address and walk around every per-IP limit.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;

/// The header reverse proxies append the client's address to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client address of a request that arrived from `peer` with `headers`, given the
/// `trusted` proxies.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = canonical(peer.ip());
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            // A proxy of ours forwarded it: look one further left.
            Some(ip) if trusted.contains(&ip) => continue,
            Some(ip) => return ip,
            // Garbage where an address should be: nothing left of it can be trusted
            // either, and the last trusted hop is who we know sent it.
            None => break,
        }
    }
    // Every hop was a trusted proxy (or the header was missing or unreadable): the
    // request came from the proxies themselves, as far as anyone can tell.
    hops.iter()
        .rev()
        .map_while(|h| parse_hop(h))
        .last()
        .unwrap_or(peer)
}

/// One entry of `X-Forwarded-For`: an IPv4 or IPv6 address, with optional spaces, an
/// optional port (`1.2.3.4:5678`, `[::1]:5678`) and optional brackets around IPv6.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(canonical)
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:1.2.3.4`) is the same client as
/// `1.2.3.4`, for the limits as for `--trusted-proxy`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const PEER: &str = "127.0.0.1:40000";

    fn of(values: &[&str], trusted: &[&str]) -> IpAddr {
        let trusted: Vec<IpAddr> = trusted.iter().map(|t| ip(t)).collect();
        client_ip(PEER.parse().unwrap(), &headers(values), &trusted)
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_says() {
        assert_eq!(of(&["203.0.113.9"], &[]), ip("127.0.0.1"));
        assert_eq!(of(&["203.0.113.9"], &["10.0.0.1"]), ip("127.0.0.1"));
        assert_eq!(of(&[], &[]), ip("127.0.0.1"));
    }

    #[test]
    fn trusted_peer_names_the_right_most_untrusted_hop() {
        let t = ["127.0.0.1", "10.0.0.1"];
        assert_eq!(of(&["203.0.113.9"], &t), ip("203.0.113.9"));
        // The client wrote the left part; our proxies appended the right part.
        assert_eq!(
            of(&["1.1.1.1, 203.0.113.9, 10.0.0.1"], &t),
            ip("203.0.113.9")
        );
        // Several headers are one list, in order.
        assert_eq!(
            of(&["1.1.1.1", "203.0.113.9,10.0.0.1"], &t),
            ip("203.0.113.9")
        );
        // Spaces, ports, IPv6 with and without brackets, IPv4-mapped IPv6.
        assert_eq!(of(&["  198.51.100.7:5555  "], &t), ip("198.51.100.7"));
        assert_eq!(of(&["2001:db8::1"], &t), ip("2001:db8::1"));
        assert_eq!(of(&["[2001:db8::2]:443"], &t), ip("2001:db8::2"));
        assert_eq!(of(&["[2001:db8::3]"], &t), ip("2001:db8::3"));
        assert_eq!(of(&["::ffff:198.51.100.8"], &t), ip("198.51.100.8"));
    }

    #[test]
    fn garbage_stops_the_walk() {
        let t = ["127.0.0.1", "10.0.0.1"];
        // Garbage right of a real client: the last good trusted hop is who sent it.
        assert_eq!(of(&["203.0.113.9, nonsense, 10.0.0.1"], &t), ip("10.0.0.1"));
        // Only garbage, or empty: the peer.
        assert_eq!(of(&["nonsense"], &t), ip("127.0.0.1"));
        assert_eq!(of(&[""], &t), ip("127.0.0.1"));
        assert_eq!(of(&[" , ,"], &t), ip("127.0.0.1"));
        assert_eq!(of(&["unknown, 203.0.113.9"], &t), ip("203.0.113.9"));
        // Not text at all.
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(
            client_ip(PEER.parse().unwrap(), &h, &[ip("127.0.0.1")]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn only_trusted_hops_means_the_left_most_of_them() {
        let t = ["127.0.0.1", "10.0.0.1", "10.0.0.2"];
        assert_eq!(of(&["10.0.0.2, 10.0.0.1"], &t), ip("10.0.0.2"));
    }

    #[test]
    fn a_mapped_peer_matches_its_ipv4_trust_entry() {
        let peer: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
        let got = client_ip(peer, &headers(&["203.0.113.9"]), &[ip("127.0.0.1")]);
        assert_eq!(got, ip("203.0.113.9"));
    }
}
