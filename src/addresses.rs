//! Where to connect: the machine's addresses for the bound socket, so that the person
//! running the server can read out `nc 192.168.1.23 4001` to the class.

use std::net::{IpAddr, SocketAddr};

/// The addresses clients can reach `bound` at. A specific address is itself. A wildcard
/// (`0.0.0.0` or `::`) stands for every interface of the family actually bound (`::` takes
/// IPv4 too): their addresses, without loopback unless loopback is all there is, and
/// without IPv6 link-local ones (which need an interface name to be reached).
pub fn reachable_addresses(bound: SocketAddr) -> Vec<IpAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound.ip()];
    }
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    let candidates: Vec<(IpAddr, bool)> = interfaces
        .iter()
        .filter(|interface| bound.is_ipv6() || interface.ip().is_ipv4())
        .filter(|interface| !interface.is_link_local())
        .map(|interface| (interface.ip(), interface.is_loopback()))
        .collect();
    let mut addresses: Vec<IpAddr> = candidates
        .iter()
        .filter(|(_, loopback)| !loopback)
        .map(|(ip, _)| *ip)
        .collect();
    if addresses.is_empty() {
        addresses = candidates.iter().map(|(ip, _)| *ip).collect();
    }
    addresses.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    addresses.dedup();
    addresses
}

/// The command a client runs to join: `nc 192.168.1.23 4001`, or with TLS
/// `openssl s_client -quiet -connect 192.168.1.23:4001`.
pub fn join_command(ip: IpAddr, port: u16, tls: bool) -> String {
    if tls {
        let address = std::net::SocketAddr::new(ip, port);
        format!("openssl s_client -quiet -connect {address}")
    } else {
        format!("nc {ip} {port}")
    }
}

/// This machine's host name (for a cluster node's default name); `localhost` if unknown.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(buffer.len());
    match (result, std::str::from_utf8(&buffer[..end])) {
        (0, Ok(name)) if !name.is_empty() => name.to_owned(),
        _ => String::from("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine_addresses() -> Vec<(IpAddr, bool)> {
        if_addrs::get_if_addrs()
            .expect("interfaces")
            .iter()
            .map(|interface| (interface.ip(), interface.is_loopback()))
            .collect()
    }

    #[test]
    fn a_specific_address_is_the_only_one_listed() {
        let bound: SocketAddr = "127.0.0.1:4001".parse().expect("address");
        assert_eq!(reachable_addresses(bound), vec![bound.ip()]);
    }

    #[test]
    fn the_ipv4_wildcard_lists_this_machines_ipv4_addresses_without_loopback() {
        let listed = reachable_addresses("0.0.0.0:4001".parse().expect("address"));
        let machine = machine_addresses();
        assert!(!listed.is_empty());
        let has_lan = machine
            .iter()
            .any(|(ip, loopback)| ip.is_ipv4() && !loopback);
        for ip in &listed {
            assert!(ip.is_ipv4(), "{ip} is not of the bound family");
            assert!(
                machine.iter().any(|(own, _)| own == ip),
                "{ip} is not this machine's"
            );
            if has_lan {
                assert!(
                    !ip.is_loopback(),
                    "loopback listed although {machine:?} has more"
                );
            }
        }
        for (ip, loopback) in machine {
            if ip.is_ipv4() && (!loopback || !has_lan) {
                assert!(listed.contains(&ip), "{ip} missing");
            }
        }
    }

    #[test]
    fn join_commands_are_ready_to_paste() {
        assert_eq!(
            join_command("192.168.1.23".parse().expect("ip"), 4001, false),
            "nc 192.168.1.23 4001"
        );
        assert_eq!(
            join_command("::1".parse().expect("ip"), 4001, true),
            "openssl s_client -quiet -connect [::1]:4001"
        );
    }
}
