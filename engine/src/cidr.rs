//! IP addresses and address blocks as the config writes them (`10.0.0.0/8`, `::1`) and
//! as records carry them (a family and 16 bytes). Shared by config validation and the
//! filter, so neither imports the other for it.

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// 2 (IPv4) or 10 (IPv6), as in records.
    pub family: u16,
    pub addr: [u8; 16],
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, family: u16, addr: &[u8; 16]) -> bool {
        if family != self.family {
            return false;
        }
        let full = (self.prefix / 8) as usize;
        if addr[..full] != self.addr[..full] {
            return false;
        }
        let rest = self.prefix % 8;
        rest == 0 || (addr[full] ^ self.addr[full]) >> (8 - rest) == 0
    }
}

/// Parses `1.2.3.4`, `10.0.0.0/8`, `::1`, `fd00::/8`.
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let mut addr = [0u8; 16];
    let (family, max) = match ip {
        std::net::IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            (2, 32)
        }
        std::net::IpAddr::V6(v6) => {
            addr = v6.octets();
            (10, 128)
        }
    };
    let prefix = prefix.unwrap_or(max);
    (prefix <= max).then_some(Cidr {
        family,
        addr,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_match() {
        let c = parse_cidr("10.1.0.0/16").unwrap();
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[10, 1, 200, 3]);
        assert!(c.contains(2, &a));
        a[1] = 2;
        assert!(!c.contains(2, &a));
        assert!(!c.contains(10, &a));
        let one = parse_cidr("::1").unwrap();
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert!(one.contains(10, &v6));
        let odd = parse_cidr("192.168.0.0/20").unwrap();
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[192, 168, 15, 1]);
        assert!(odd.contains(2, &b));
        b[2] = 16;
        assert!(!odd.contains(2, &b));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("nope").is_none());
    }
}
