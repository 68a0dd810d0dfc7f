//! The PROXY protocol header (HAProxy's spec, versions 1 and 2), with no sockets and no clocks.
//!
//! Behind a load balancer (HAProxy, nginx `stream`, most cloud L4 balancers), every connection
//! comes from the balancer; with the PROXY protocol on, the balancer starts each one with a
//! header naming the real client. A listener that requires it ([`Listen::proxy_protocol`])
//! reads the header before anything else: the client address in it is the channel's address
//! everywhere (`on_connect`, [`ChannelCtx::addr`](crate::ChannelCtx::addr), logs), and a
//! connection without a valid header is closed before any greeting.
//!
//! ```text
//! v1:  PROXY TCP4 203.0.113.7 192.0.2.1 56324 5071\r\n             (text, at most 107 bytes)
//! v2:  \r\n\r\n\0\r\nQUIT\n  ver|cmd  fam|proto  len(16 bits)  addresses  TLVs...
//! ```
//!
//! [`parse`] is given everything received so far and returns `Ok(None)` until the header is
//! complete; each prefix is checked as it arrives, so garbage is refused at its first byte and
//! a v2 header longer than the cap is refused on its length field. The headers themselves are
//! parsed by the [`ppp`] crate.
//!
//! ```
//! use repod::proxy::parse;
//!
//! let wire = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 5071\r\n\x00\x00\x00\x01\x80";
//! let header = parse(wire, 512).unwrap().unwrap();
//! assert_eq!(header.len, 45);
//! assert_eq!(header.source, Some("203.0.113.7:56324".parse().unwrap()));
//! assert_eq!(parse(&wire[..20], 512), Ok(None));
//! assert!(parse(b"\x00\x00\x00\x01\x80", 512).is_err());
//! ```
//!
//! [`Listen::proxy_protocol`]: crate::Listen::proxy_protocol

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ppp::PartialResult;

/// The version 2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The version 1 prefix.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest version 1 header, by the spec.
pub const V1_MAX_LEN: usize = 107;
/// Default cap on a version 2 header, TLVs included.
pub const DEFAULT_MAX_HEADER_LEN: usize = 1024;

/// A complete, valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Its length: what follows it is the client's own bytes.
    pub len: usize,
    /// The client's address; `None` for a v2 `LOCAL` header (the balancer's own health check)
    /// and a v1 `UNKNOWN` one, which by the spec mean "use the connection's own address".
    pub source: Option<SocketAddr>,
}

/// Why a connection's PROXY header was refused. The connection is closed before any greeting
/// and no channel is created; the error reaches the log and
/// [`ServerHandler::on_refused`](crate::ServerHandler::on_refused).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The connection does not start with a PROXY header (a client that bypassed the balancer).
    Missing,
    /// A header longer than the cap (107 bytes for v1 by the spec; the listener's cap for v2).
    TooLarge {
        /// The cap.
        max: usize,
    },
    /// A header that starts right but is malformed: the parser's reason.
    Invalid(String),
    /// An address family this server cannot name a client by (a Unix socket).
    Unsupported,
    /// The header did not arrive within the time limit.
    Timeout,
    /// The server stopped listening (it is shutting down or draining) before the header came.
    Unavailable,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Missing => f.write_str("no PROXY protocol header"),
            ProxyError::TooLarge { max } => write!(f, "PROXY header longer than {max} bytes"),
            ProxyError::Invalid(why) => write!(f, "invalid PROXY header: {why}"),
            ProxyError::Unsupported => f.write_str("PROXY header for a Unix socket"),
            ProxyError::Timeout => f.write_str("PROXY header not received in time"),
            ProxyError::Unavailable => f.write_str("server no longer accepting"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Parses the header at the start of `buf`, a v2 header being at most `max_len` bytes long.
///
/// # Errors
///
/// The first reason to refuse the connection, as soon as the bytes show it.
pub fn parse(buf: &[u8], max_len: usize) -> Result<Option<ProxyHeader>, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return parse_v2(buf, max_len);
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        return parse_v1(buf);
    }
    Err(ProxyError::Missing)
}

fn parse_v2(buf: &[u8], max_len: usize) -> Result<Option<ProxyHeader>, ProxyError> {
    let result = ppp::v2::Header::try_from(buf);
    // The length field (in the first 16 bytes, checked by then) is held against the cap
    // before the rest is waited for; the fixed fields' errors come first at every prefix.
    let too_large =
        buf.len() >= 16 && 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize > max_len;
    if result.is_incomplete() {
        return match too_large {
            true => Err(ProxyError::TooLarge { max: max_len }),
            false => Ok(None),
        };
    }
    let header = result.map_err(|e| ProxyError::Invalid(e.to_string()))?;
    if too_large {
        return Err(ProxyError::TooLarge { max: max_len });
    }
    let source = match header.command {
        ppp::v2::Command::Local => None,
        ppp::v2::Command::Proxy => match header.addresses {
            ppp::v2::Addresses::IPv4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            ppp::v2::Addresses::IPv6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            // The spec: an unspecified family means the receiver uses the real addresses.
            ppp::v2::Addresses::Unspecified => None,
            ppp::v2::Addresses::Unix(_) => return Err(ProxyError::Unsupported),
        },
    };
    Ok(Some(ProxyHeader {
        len: header.len(),
        source,
    }))
}

fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let Some(cr) = buf.iter().position(|&b| b == b'\r') else {
        return match buf.len() {
            n if n >= V1_MAX_LEN => Err(ProxyError::TooLarge { max: V1_MAX_LEN }),
            _ => Ok(None),
        };
    };
    if cr + 2 > V1_MAX_LEN {
        return Err(ProxyError::TooLarge { max: V1_MAX_LEN });
    }
    if buf.len() < cr + 2 {
        return Ok(None); // the \n is still to come
    }
    let header = ppp::v1::Header::try_from(&buf[..cr + 2])
        .map_err(|e| ProxyError::Invalid(e.to_string()))?;
    let source = match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        ppp::v1::Addresses::Unknown => None,
    };
    Ok(Some(ProxyHeader {
        len: cr + 2,
        source,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    fn v4_addresses() -> Vec<u8> {
        let mut a = vec![203, 0, 113, 7, 192, 0, 2, 1];
        a.extend_from_slice(&56324u16.to_be_bytes());
        a.extend_from_slice(&5071u16.to_be_bytes());
        a
    }

    /// Every prefix is incomplete, the whole is the header, bytes after it are left alone.
    fn check_at_every_split(header: &[u8], source: Option<&str>) {
        for cut in 0..header.len() {
            assert_eq!(
                parse(&header[..cut], 1024),
                Ok(None),
                "cut {cut} of {header:?}"
            );
        }
        let mut with_frame = header.to_vec();
        with_frame.extend_from_slice(b"\0\0\0\x01\x80");
        let h = parse(&with_frame, 1024).unwrap().unwrap();
        assert_eq!(h.len, header.len());
        assert_eq!(h.source, source.map(|s| s.parse().unwrap()));
    }

    #[test]
    fn v1_and_v2_in_both_families_with_tlvs_and_local() {
        check_at_every_split(
            b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 5071\r\n",
            Some("203.0.113.7:56324"),
        );
        check_at_every_split(
            b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 5071\r\n",
            Some("[2001:db8::7]:56324"),
        );
        check_at_every_split(b"PROXY UNKNOWN\r\n", None);
        check_at_every_split(
            &v2(1, 0x11, &v4_addresses(), &[]),
            Some("203.0.113.7:56324"),
        );
        let tlvs = [0x01, 0, 2, b'h', b'2', 0x04, 0, 1, 0];
        check_at_every_split(
            &v2(1, 0x11, &v4_addresses(), &tlvs),
            Some("203.0.113.7:56324"),
        );
        let mut v6 = Vec::new();
        v6.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend_from_slice(&[0xdc, 0x04, 0x13, 0xcf]);
        check_at_every_split(&v2(1, 0x21, &v6, &[]), Some("[2001:db8::7]:56324"));
        // LOCAL: the balancer's own check; the connection's own address applies.
        check_at_every_split(&v2(0, 0x00, &[], &[]), None);
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b"\0\0\0\x05", 1024), Err(ProxyError::Missing));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", 1024), Err(ProxyError::Missing));
        assert_eq!(parse(b"PROXZ", 1024), Err(ProxyError::Missing));
        // v1 without an end, and an end past 107 bytes.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(parse(&long, 1024), Err(ProxyError::TooLarge { max: 107 }));
        let mut late = long.clone();
        late.extend_from_slice(b"\r\n");
        assert_eq!(parse(&late, 1024), Err(ProxyError::TooLarge { max: 107 }));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n", 1024),
            Err(ProxyError::Invalid(_))
        ));
        // v2 over the cap: refused on its length field, before the rest arrives.
        let big = v2(1, 0x11, &v4_addresses(), &[0u8; 2000]);
        assert_eq!(
            parse(&big[..16], 1024),
            Err(ProxyError::TooLarge { max: 1024 })
        );
        // Bad version, command, family; a Unix address.
        let mut bad = v2(1, 0x11, &v4_addresses(), &[]);
        bad[12] = 0x31;
        assert!(matches!(parse(&bad, 1024), Err(ProxyError::Invalid(_))));
        let mut bad = v2(1, 0x11, &v4_addresses(), &[]);
        bad[13] = 0x51;
        assert!(matches!(parse(&bad, 1024), Err(ProxyError::Invalid(_))));
        let unix = v2(1, 0x31, &[0u8; 216], &[]);
        assert_eq!(parse(&unix, 1024), Err(ProxyError::Unsupported));
        // Too short for its family.
        let short = v2(1, 0x11, &[1, 2, 3], &[]);
        assert!(matches!(parse(&short, 1024), Err(ProxyError::Invalid(_))));
    }
}
