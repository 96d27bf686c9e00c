//! The terminal's network interfaces for the network map (seed 001 claim 7, ¶0018): name,
//! hardware address and IP addresses of every interface but loopback, from `getifaddrs`. The
//! agent reports them at a check-in only when they differ from what it reported last (a digest
//! kept in `status.json`), so an unchanged terminal adds nothing to its check-ins.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use herd_proto::api::NetworkInterface;
use nix::net::if_::InterfaceFlags;
use sha2::{Digest as _, Sha256};

/// The interfaces now, sorted by name, each with its addresses sorted; loopback left out.
/// `override_file` (tests, or a terminal whose agent cannot see its interfaces) is a JSON list
/// of interfaces read instead.
pub(crate) fn current(override_file: Option<&Path>) -> Result<Vec<NetworkInterface>> {
    if let Some(path) = override_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --interfaces-file {}", path.display()))?;
        return serde_json::from_str(&text).with_context(|| {
            format!(
                "--interfaces-file {}: not a list of interfaces",
                path.display()
            )
        });
    }
    let mut by_name: BTreeMap<String, NetworkInterface> = BTreeMap::new();
    for entry in nix::ifaddrs::getifaddrs().context("cannot list the network interfaces")? {
        if entry.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        let interface = by_name
            .entry(entry.interface_name.clone())
            .or_insert_with(|| NetworkInterface {
                name: entry.interface_name.clone(),
                mac: None,
                addresses: Vec::new(),
            });
        let Some(address) = entry.address else {
            continue;
        };
        if let Some(link) = address.as_link_addr() {
            if let Some(mac) = link.addr().filter(|mac| mac.iter().any(|b| *b != 0)) {
                interface.mac = Some(
                    mac.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            }
        } else if let Some(v4) = address.as_sockaddr_in() {
            interface.addresses.push(v4.ip().to_string());
        } else if let Some(v6) = address.as_sockaddr_in6() {
            interface.addresses.push(v6.ip().to_string());
        }
    }
    let mut interfaces: Vec<NetworkInterface> = by_name.into_values().collect();
    for interface in &mut interfaces {
        interface.addresses.sort();
        interface.addresses.dedup();
    }
    Ok(interfaces)
}

/// What identifies a set of interfaces, to tell whether it changed since it was reported.
pub(crate) fn digest(interfaces: &[NetworkInterface]) -> String {
    let json = serde_json::to_vec(interfaces).expect("interfaces serialise");
    Sha256::digest(&json)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interfaces_of_this_machine_leave_loopback_out_and_are_sorted() {
        let interfaces = current(None).unwrap();
        assert!(interfaces.iter().all(|i| i.name != "lo"), "{interfaces:?}");
        let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for interface in &interfaces {
            for address in &interface.addresses {
                address.parse::<std::net::IpAddr>().unwrap();
            }
        }
        assert_eq!(digest(&interfaces), digest(&interfaces.clone()));
    }
}
