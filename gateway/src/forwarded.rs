//! `X-Forwarded-For`/`-Proto`/`-Host`: what the gateway tells an app about the original
//! request. Values sent by a client are believed only when the connecting peer is one of
//! `server.trusted_proxies`.

use std::net::IpAddr;

use ipnet::IpNet;

/// The forwarding headers to send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub for_chain: String,
    pub proto: &'static str,
    pub host: Option<String>,
    /// The original client as far as trusted proxies tell (for rate limits and logs).
    pub client: Option<IpAddr>,
}

/// What the client sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Incoming<'a> {
    pub x_forwarded_for: Option<&'a str>,
    pub x_forwarded_proto: Option<&'a str>,
    pub x_forwarded_host: Option<&'a str>,
    pub host: Option<&'a str>,
}

pub fn is_trusted(peer: Option<IpAddr>, trusted: &[IpNet]) -> bool {
    peer.is_some_and(|ip| trusted.iter().any(|n| n.contains(&ip)))
}

/// Computes the forwarding headers. From an untrusted peer every client value is replaced:
/// the chain is the peer alone, the proto is ours, the host is the `Host` header. From a
/// trusted peer the peer is appended to the chain it sent, and its proto/host are kept.
pub fn forwarded(peer: Option<IpAddr>, tls: bool, trusted: &[IpNet], inc: Incoming<'_>) -> Forwarded {
    let own_proto = if tls { "https" } else { "http" };
    let peer_s = peer.map(ip_text).unwrap_or_else(|| "unknown".into());
    if !is_trusted(peer, trusted) {
        return Forwarded {
            for_chain: peer_s,
            proto: own_proto,
            host: inc.host.map(str::to_string),
            client: peer,
        };
    }
    let sent = inc.x_forwarded_for.map(str::trim).filter(|s| !s.is_empty());
    let for_chain = match sent {
        Some(chain) => format!("{chain}, {peer_s}"),
        None => peer_s,
    };
    // The client is the right-most address that is not one of our trusted proxies.
    let client = for_chain
        .rsplit(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !is_trusted(Some(*ip), trusted))
        .or(peer);
    let proto = match inc.x_forwarded_proto.map(str::trim) {
        Some("http") => "http",
        Some("https") => "https",
        _ => own_proto,
    };
    Forwarded {
        for_chain,
        proto,
        host: inc.x_forwarded_host.or(inc.host).map(str::to_string),
        client,
    }
}

/// An address as text, as `Display` writes it; IPv4 without the formatting machinery
/// (every proxied request writes its client's address twice).
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(digits.format(octet));
            }
            text
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.0.2.9",
            "::1",
            "2001:db8::17",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for n in [0u32, 1, 99, 100, 256, 65_535, 16_777_216, 3_232_235_777, u32::MAX] {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(n));
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_values_are_replaced() {
        let inc = Incoming {
            x_forwarded_for: Some("6.6.6.6"),
            x_forwarded_proto: Some("https"),
            x_forwarded_host: Some("evil.example"),
            host: Some("apps.example.com"),
        };
        let f = forwarded(Some("192.0.2.1".parse().unwrap()), false, &nets(&["10.0.0.0/8"]), inc);
        assert_eq!(f.for_chain, "192.0.2.1");
        assert_eq!(f.proto, "http");
        assert_eq!(f.host.as_deref(), Some("apps.example.com"));
        assert_eq!(f.client, Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn trusted_peer_values_are_appended() {
        let inc = Incoming {
            x_forwarded_for: Some("203.0.113.9, 10.0.0.7"),
            x_forwarded_proto: Some("https"),
            x_forwarded_host: Some("apps.example.com"),
            host: Some("internal:8080"),
        };
        let f = forwarded(Some("10.0.0.5".parse().unwrap()), false, &nets(&["10.0.0.0/8"]), inc);
        assert_eq!(f.for_chain, "203.0.113.9, 10.0.0.7, 10.0.0.5");
        assert_eq!(f.proto, "https");
        assert_eq!(f.host.as_deref(), Some("apps.example.com"));
        assert_eq!(f.client, Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn bogus_proto_from_trusted_peer_is_ignored() {
        let inc = Incoming {
            x_forwarded_proto: Some("gopher"),
            ..Incoming::default()
        };
        let f = forwarded(Some("10.0.0.5".parse().unwrap()), true, &nets(&["10.0.0.5/32"]), inc);
        assert_eq!(f.proto, "https");
        assert_eq!(f.for_chain, "10.0.0.5");
    }
}
