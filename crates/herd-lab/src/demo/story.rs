//! The cast of `herd demo`, after SPEC §5's worked example: two vaccine makers, their real
//! packages and catalog feeds, virus a, and the four terminals. Pure data plus the package
//! build; nothing here talks to the center or runs a process.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use herd_package::{BuiltPackage, PackageSpec};
use serde_json::json;

/// The bytes that stand for virus a's body. Harmless text: only vaccine-b's definitions carry
/// a signature for it.
pub const VIRUS_A_BODY: &str = "HERD-DEMO-VIRUS-A-BODY";

/// The signature name vaccine-b reports for virus a.
pub const VIRUS_A_SIGNATURE: &str = "MakerB.VirusA";

/// What the demo's sample file holds: virus a's body inside otherwise ordinary text.
pub fn sample_content() -> String {
    format!(
        "A greeting card that arrived by mail. It carries virus a:\n{VIRUS_A_BODY}\n(harmless text standing in for the real thing)\n"
    )
}

/// Worm b's body (the herd-immunity step): only maker A's definitions name it.
pub const WORM_B_BODY: &str = "HERD-DEMO-WORM-B-BODY";
pub const WORM_B_SIGNATURE: &str = "MakerA.WormB";
pub const WORM_B_NAME: &str = "holiday-photos.scr";

/// A file carrying worm b.
pub fn worm_content() -> String {
    format!("Holiday photos, it says. It carries worm b:\n{WORM_B_BODY}\n")
}

pub const THREAT: &str = "virus-a";
pub const THREAT_DISCOVERED: &str = "2000-11-10";
/// Maker A's announced date for covering virus a (SPEC §4's example feed).
pub const THREAT_EXPECTED_FROM_A: &str = "2000-11-15";

/// One vendor's product and the release the demo ships.
#[derive(Clone, Copy, Debug)]
pub struct Vaccine {
    pub vendor: &'static str,
    pub vendor_name: &'static str,
    pub product: &'static str,
    pub product_name: &'static str,
    pub version: &'static str,
    pub seq: u64,
    pub pattern: &'static str,
    pub published: &'static str,
    pub platforms: &'static [&'static str],
    /// The vendor's own test pattern: what its definitions must detect once installed.
    pub test_pattern: &'static str,
    /// Whether this release's definitions detect virus a.
    pub detects_virus_a: bool,
}

pub const VACCINE_A: Vaccine = Vaccine {
    vendor: "maker-a",
    vendor_name: "Vaccine Maker A",
    product: "vaccine-a",
    product_name: "Vaccine a",
    version: "5.1",
    seq: 1101,
    pattern: "a-1101",
    published: "2000-11-01T00:00:00Z",
    platforms: &["phone", "pda", "pc", "stb"],
    test_pattern: "HERD-DEMO-TEST-PATTERN-MAKER-A",
    detects_virus_a: false,
};

pub const VACCINE_B: Vaccine = Vaccine {
    vendor: "maker-b",
    vendor_name: "Vaccine Maker B",
    product: "vaccine-b",
    product_name: "Vaccine b",
    version: "7.0",
    seq: 1112,
    pattern: "b-1112",
    published: "2000-11-12T00:00:00Z",
    platforms: &["phone", "pc"],
    test_pattern: "HERD-DEMO-TEST-PATTERN-MAKER-B",
    detects_virus_a: true,
};

impl Vaccine {
    /// `vaccine-a 5.1 (a-1101)`, the way plans name releases.
    pub fn label(&self) -> String {
        format!("{} {} ({})", self.product, self.version, self.pattern)
    }

    /// The definitions file: an `.ndb` body signature for the vendor's test pattern, and for
    /// virus a when this release covers it.
    fn definitions(&self) -> String {
        let own = format!(
            "{}.TestPattern",
            if self.vendor == "maker-a" {
                "MakerA"
            } else {
                "MakerB"
            }
        );
        let mut ndb = ndb_line(&own, self.test_pattern);
        if self.vendor == "maker-a" {
            ndb.push_str(&ndb_line(WORM_B_SIGNATURE, WORM_B_BODY));
        }
        if self.detects_virus_a {
            ndb.push_str(&ndb_line(VIRUS_A_SIGNATURE, VIRUS_A_BODY));
        }
        ndb
    }

    /// Writes the package's sources under `work` and builds `<work>/<product>-<version>.tar.gz`.
    pub fn build(&self, work: &Path) -> anyhow::Result<(PathBuf, BuiltPackage)> {
        let sources = work.join(format!("{}-{}", self.product, self.version));
        fs::create_dir_all(&sources)
            .with_context(|| format!("cannot create {}", sources.display()))?;
        let write = |name: &str, content: &[u8]| -> anyhow::Result<PathBuf> {
            let path = sources.join(name);
            fs::write(&path, content)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        };
        let definitions = write(
            &format!("{}.ndb", self.pattern),
            self.definitions().as_bytes(),
        )?;
        let test_pattern = write(
            "test-pattern.txt",
            format!(
                "{}'s test file: its definitions must detect this.\n{}\n",
                self.vendor_name, self.test_pattern
            )
            .as_bytes(),
        )?;
        let spec = PackageSpec {
            product: self.product.to_owned(),
            vendor: self.vendor.to_owned(),
            version: self.version.to_owned(),
            seq: self.seq,
            pattern: self.pattern.to_owned(),
            definitions: vec![definitions],
            test_pattern,
            post_install: None,
            pre_uninstall: None,
            platforms: self.platforms.iter().map(|p| (*p).to_owned()).collect(),
        };
        let out = work.join(format!("{}-{}.tar.gz", self.product, self.version));
        let built = herd_package::build(&spec, &out)
            .with_context(|| format!("cannot build the {} package", self.label()))?;
        Ok((out, built))
    }

    /// The vendor's whole catalog feed (`herd.catalog/v1`): itself, its product, this release
    /// with the built package's digest for every platform, virus a, and its coverage of it.
    pub fn feed(&self, built: &BuiltPackage) -> serde_json::Value {
        let coverage = if self.detects_virus_a {
            json!({"product": self.product, "threat": THREAT, "since_seq": self.seq,
                   "covered_on": &self.published[..10]})
        } else {
            json!({"product": self.product, "threat": THREAT, "since_seq": null,
                   "covered_on": null, "expected": THREAT_EXPECTED_FROM_A})
        };
        json!({
            "format": "herd.catalog/v1",
            "vendors": [{"id": self.vendor, "name": self.vendor_name}],
            "products": [{"id": self.product, "vendor": self.vendor, "name": self.product_name,
                          "platforms": self.platforms}],
            "releases": [{"product": self.product, "version": self.version, "pattern": self.pattern,
                          "seq": self.seq, "published": self.published,
                          "packages": built.catalog_packages}],
            "threats": [{"id": THREAT, "name": "virus a", "danger": "high",
                         "discovered": THREAT_DISCOVERED}],
            "coverage": [coverage],
        })
    }
}

/// `NAME:0:*:HEX`: a ClamAV body signature for `text` anywhere in any file.
fn ndb_line(name: &str, text: &str) -> String {
    format!("{name}:0:*:{}\n", hex::encode(text.as_bytes()))
}

/// One of the four terminals; each runs a real `herd-agent` with its own prefix and state.
#[derive(Clone, Copy, Debug)]
pub struct Device {
    pub id: &'static str,
    pub user: &'static str,
    /// Hardware kind and platform (the same here).
    pub kind: &'static str,
    pub describe: &'static str,
}

pub const PHONE: Device = Device {
    id: "phone-a",
    user: "user-a",
    kind: "phone",
    describe: "user A's phone",
};
pub const PDA: Device = Device {
    id: "pda-c",
    user: "user-c",
    kind: "pda",
    describe: "user C's PDA",
};
pub const PC: Device = Device {
    id: "pc-b",
    user: "user-b",
    kind: "pc",
    describe: "user B's PC",
};
pub const STB: Device = Device {
    id: "stb-d",
    user: "user-d",
    kind: "stb",
    describe: "user D's set-top box",
};

pub const DEVICES: [Device; 4] = [PHONE, PDA, PC, STB];

/// The group user B's PC is placed in: it keeps the vendor it runs.
pub const SAME_VENDOR_GROUP: &str = "same-vendor";

/// The terminals' time zone (the worked example is set in Japan).
pub const TZ: &str = "+09:00";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vaccine_b_carries_virus_a_s_signature() {
        let virus = hex::encode(VIRUS_A_BODY);
        assert!(!VACCINE_A.definitions().contains(&virus));
        assert!(VACCINE_B.definitions().contains(&virus));
        assert!(
            VACCINE_B
                .definitions()
                .contains(&format!("{VIRUS_A_SIGNATURE}:0:*:{virus}"))
        );
        assert!(sample_content().contains(VIRUS_A_BODY));
    }

    #[test]
    fn the_feeds_are_valid_catalogs_that_merge_into_the_worked_example() {
        let work = std::env::temp_dir().join(format!("herd-demo-story-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        let (_, a) = VACCINE_A.build(&work).unwrap();
        let (_, b) = VACCINE_B.build(&work).unwrap();
        let feeds = [VACCINE_A.feed(&a), VACCINE_B.feed(&b)];
        for feed in &feeds {
            herd_proto::catalog::parse_catalog("feed", &feed.to_string()).unwrap();
        }
        let docs: Vec<herd_proto::catalog::CatalogDoc> = feeds
            .iter()
            .map(|f| serde_json::from_value(f.clone()).unwrap())
            .collect();
        let merged = herd_proto::merge::merge(docs.iter());
        merged.validate("merged").unwrap();
        assert_eq!(merged.threats.len(), 1);
        assert_eq!(a.catalog_packages.len(), 4);
        assert_eq!(b.catalog_packages.len(), 2);
        fs::remove_dir_all(&work).unwrap();
    }
}
