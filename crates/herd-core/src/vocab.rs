//! Small closed vocabularies of the data formats: danger levels, package formats, SHA-256
//! digests, and the character rules for identifiers that end up in file paths and scripts.

use std::fmt;

/// How dangerous a threat is. Ordered: `Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Danger {
    Low,
    Medium,
    High,
    Critical,
}

impl Danger {
    /// Every level, from least to most dangerous.
    pub const ALL: [Danger; 4] = [Danger::Low, Danger::Medium, Danger::High, Danger::Critical];

    pub fn parse(text: &str) -> Result<Danger, String> {
        match text {
            "low" => Ok(Danger::Low),
            "medium" => Ok(Danger::Medium),
            "high" => Ok(Danger::High),
            "critical" => Ok(Danger::Critical),
            _ => Err(format!(
                "unknown danger {text:?}; expected one of low, medium, high, critical"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Danger::Low => "low",
            Danger::Medium => "medium",
            Danger::High => "high",
            Danger::Critical => "critical",
        }
    }

    /// 0 for `Low` up to 3 for `Critical`; handy for per-level count arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Danger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a vaccine package is packed and installed (SPEC §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PackageFormat {
    /// A tar archive (gzip or zstd) unpacked into the agent's product prefix.
    Archive,
    Deb,
    Rpm,
    Msi,
    /// An Android package.
    Apk,
}

impl PackageFormat {
    pub const ALL: [PackageFormat; 5] = [
        PackageFormat::Archive,
        PackageFormat::Deb,
        PackageFormat::Rpm,
        PackageFormat::Msi,
        PackageFormat::Apk,
    ];

    pub fn parse(text: &str) -> Result<PackageFormat, String> {
        match text {
            "archive" => Ok(PackageFormat::Archive),
            "deb" => Ok(PackageFormat::Deb),
            "rpm" => Ok(PackageFormat::Rpm),
            "msi" => Ok(PackageFormat::Msi),
            "apk" => Ok(PackageFormat::Apk),
            _ => Err(format!(
                "unknown package format {text:?}; expected one of archive, deb, rpm, msi, apk"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PackageFormat::Archive => "archive",
            PackageFormat::Deb => "deb",
            PackageFormat::Rpm => "rpm",
            PackageFormat::Msi => "msi",
            PackageFormat::Apk => "apk",
        }
    }
}

impl fmt::Display for PackageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses 64 hexadecimal digits (either case).
    pub fn parse_hex(text: &str) -> Result<Sha256, String> {
        if text.len() != 64 {
            return Err(format!(
                "a SHA-256 digest is 64 hexadecimal digits; found {} characters",
                text.chars().count()
            ));
        }
        let mut bytes = [0u8; 32];
        for (i, c) in text.chars().enumerate() {
            let Some(nibble) = c.to_digit(16) else {
                return Err(format!(
                    "a SHA-256 digest is hexadecimal; found {c:?} at character {}",
                    i + 1
                ));
            };
            bytes[i / 2] |= (nibble as u8) << if i % 2 == 0 { 4 } else { 0 };
        }
        Ok(Sha256(bytes))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// Checks an identifier (vendor, product, threat id) that may become a path component or
/// appear in a script: 1 to 128 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_identifier(text: &str) -> Result<(), String> {
    check_token(text, "an identifier", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })
}

/// Checks a version string, which becomes a directory name: like an identifier, and `+` and `~` are allowed too.
pub fn check_version(text: &str) -> Result<(), String> {
    check_token(text, "a version", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '~')
    })
}

fn check_token(text: &str, what: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if text.len() > 128 {
        return Err(format!(
            "{what} is at most 128 characters; found {}",
            text.len()
        ));
    }
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{what} must start with a letter or digit: {text:?}"
        ));
    }
    if let Some(bad) = text.chars().find(|&c| !allowed(c)) {
        return Err(format!("{what} may not contain {bad:?}: {text:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn danger_orders_and_round_trips() {
        assert!(Danger::Low < Danger::Medium && Danger::High < Danger::Critical);
        for d in Danger::ALL {
            assert_eq!(Danger::parse(d.as_str()), Ok(d));
        }
        assert!(
            Danger::parse("severe")
                .unwrap_err()
                .contains("unknown danger \"severe\"")
        );
    }

    #[test]
    fn digests_parse_and_print() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Sha256::parse_hex(hex).unwrap().to_string(), hex);
        assert_eq!(
            Sha256::parse_hex(&hex.to_uppercase()).unwrap().to_string(),
            hex
        );
        assert!(
            Sha256::parse_hex("abc")
                .unwrap_err()
                .contains("64 hexadecimal digits")
        );
        let bad = format!("{}g", &hex[..63]);
        assert!(
            Sha256::parse_hex(&bad)
                .unwrap_err()
                .contains("'g' at character 64")
        );
    }

    #[test]
    fn identifiers_refuse_path_and_shell_tricks() {
        assert!(check_identifier("vaccine-a").is_ok());
        for bad in ["", "../etc", ".hidden", "a/b", "a b", "a'b", "a;rm", "é"] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
        assert!(check_version("1.2.3+build~rc1").is_ok());
        assert!(check_version("1/2").is_err());
    }
}
