//! Placement rules: which group a terminal joins at enrolment. Pure: the first rule whose
//! every given condition holds wins; no rule → the `unknown` group.

use std::net::IpAddr;

use herd_proto::api::PlacementRule;

/// An address range like `10.1.0.0/16` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address range like 10.1.0.0/16"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Checks a rule set before it is stored; every problem names the rule.
pub fn check_rules(rules: &[PlacementRule]) -> Result<(), Vec<herd_proto::Problem>> {
    let mut problems = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if let Some(address) = &rule.address {
            if let Err(message) = Cidr::parse(address) {
                problems.push(herd_proto::Problem {
                    path: format!("$.rules[{i}].address"),
                    message,
                });
            }
        }
        if rule.kind.is_none()
            && rule.platform.is_none()
            && rule.address.is_none()
            && rule.user.is_none()
        {
            problems.push(herd_proto::Problem {
                path: format!("$.rules[{i}]"),
                message: "a rule needs at least one condition (kind, platform, address or user)"
                    .to_owned(),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// What placement looks at.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub kind: &'a str,
    pub platform: &'a str,
    pub address: IpAddr,
    pub user: Option<&'a str>,
}

/// The group of the first matching rule, or `None` (the caller uses `unknown`).
pub fn place<'r>(rules: &'r [PlacementRule], terminal: Candidate<'_>) -> Option<&'r str> {
    rules
        .iter()
        .find(|rule| {
            rule.kind.as_deref().is_none_or(|k| k == terminal.kind)
                && rule
                    .platform
                    .as_deref()
                    .is_none_or(|p| p == terminal.platform)
                && rule
                    .user
                    .as_deref()
                    .is_none_or(|u| Some(u) == terminal.user)
                && rule
                    .address
                    .as_deref()
                    .is_none_or(|a| Cidr::parse(a).is_ok_and(|c| c.contains(terminal.address)))
        })
        .map(|rule| rule.group.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        group: &str,
        kind: Option<&str>,
        address: Option<&str>,
        user: Option<&str>,
    ) -> PlacementRule {
        PlacementRule {
            group: group.into(),
            kind: kind.map(Into::into),
            platform: None,
            address: address.map(Into::into),
            user: user.map(Into::into),
        }
    }

    fn at(kind: &str, address: &str, user: Option<&str>) -> Candidate<'static> {
        Candidate {
            kind: Box::leak(kind.to_owned().into_boxed_str()),
            platform: "phone",
            address: address.parse().unwrap(),
            user: user.map(|u| &*Box::leak(u.to_owned().into_boxed_str())),
        }
    }

    #[test]
    fn first_matching_rule_wins_and_no_match_is_none() {
        let rules = vec![
            rule("b-users", None, None, Some("user-b")),
            rule("office", None, Some("10.1.0.0/16"), None),
            rule("phones", Some("phone"), None, None),
        ];
        assert_eq!(
            place(&rules, at("phone", "10.1.2.3", Some("user-b"))),
            Some("b-users")
        );
        assert_eq!(place(&rules, at("phone", "10.1.2.3", None)), Some("office"));
        assert_eq!(place(&rules, at("phone", "10.2.0.1", None)), Some("phones"));
        assert_eq!(place(&rules, at("pc", "10.2.0.1", None)), None);
    }

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.255.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        for bad in ["10.1.0.0/33", "nonsense", "10.1.0.0/x", "fd00::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_without_conditions_or_with_bad_ranges_are_refused() {
        let problems = check_rules(&[
            rule("g", None, None, None),
            rule("g", None, Some("10.0.0.0/99"), None),
        ])
        .unwrap_err();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[1].path, "$.rules[1].address");
    }
}
