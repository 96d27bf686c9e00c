//! ClamAV's matching semantics, case by case, compared with clamscan: each normalisation
//! (text, HTML comments, tags, character references), each signature target on its own file
//! type and on another (the near miss), PE-relative offsets, match counts, `Container:`, and
//! the `.fp`/`.ign2` allow-lists. Every case states its expected hits, so the test means
//! something without clamscan; with clamscan on PATH (apt-get install clamav) its detections
//! must be the same, file by file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use herd_scan::archive::build::{tar, zip};
use herd_scan::pe;
use herd_scan::{Database, Engine, Limits, MatchOptions, Scanner, Scratch};

/// One signature line and the files that must (true) and must not (false) match it.
struct Case {
    db: &'static str,
    line: String,
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>, bool)>,
}

fn hex(s: &[u8]) -> String {
    s.iter().map(|b| format!("{b:02x}")).collect()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Bytes no magic number claims and that are not text (NUL bytes), so only target 0 applies.
fn binary(payload: &[u8]) -> Vec<u8> {
    cat(&[b"\x00\x01\x00\x02binary\x00", payload, b"\x00\x03"])
}

fn ndb(name: &'static str, target: u8, offset: &str, pattern: &[u8]) -> (String, &'static str) {
    (format!("{name}:{target}:{offset}:{}", hex(pattern)), name)
}

fn case(
    db: &'static str,
    (line, name): (String, &'static str),
    files: Vec<(&'static str, Vec<u8>, bool)>,
) -> Case {
    Case {
        db,
        line,
        name,
        files,
    }
}

/// A PE image with recognisable bytes at its entry point (RVA 0x1010, file offset 0x210) and
/// at the start of its second and last section (file offset 0x400).
fn pe_file() -> Vec<u8> {
    let mut d = pe_plain();
    d[0x210..0x220].copy_from_slice(b"HERD-EP-CODE-015");
    d[0x400..0x410].copy_from_slice(b"HERD-SECTION-ONE");
    d[0x480..0x490].copy_from_slice(b"HERD-IN-SECTION1");
    d
}

/// The same PE image without the markers, for cases about other signatures.
fn pe_plain() -> Vec<u8> {
    pe::build(
        0x1010,
        &[(0x200, 0x200, 0x1000), (0x400, 0x200, 0x2000)],
        0x600,
    )
}

fn cases() -> Vec<Case> {
    let mut c = Vec::new();

    // Text normalisation: target 0 signatures meet lower-cased, space-collapsed text too.
    c.push(case(
        "t.ndb",
        ndb("Herd.Text.Lower", 0, "*", b"eval(unescape(payload"),
        vec![
            (
                "upper.txt",
                b"var x = EVAL(UNESCAPE(PAYLOAD));\n".to_vec(),
                true,
            ),
            ("lower.txt", b"eval(unescape(payload".to_vec(), true),
            // Not text: no normalisation, and the raw bytes differ in case.
            ("upper.bin", binary(b"EVAL(UNESCAPE(PAYLOAD"), false),
            // Control bytes but no NUL where a UTF-16 character would be < 0x80: ClamAV's
            // UTF-16 check (without byte-order mark) calls this text, so it is normalised.
            (
                "upper-utf16ish.bin",
                b"\x01\x02EVAL(UNESCAPE(PAYLOAD\x01\x02".to_vec(),
                true,
            ),
        ],
    ));
    c.push(case(
        "t.ndb",
        ndb("Herd.Text.Spaces", 0, "*", b"collapse these words"),
        vec![
            (
                "spaces.txt",
                b"Collapse \t\r\n  THESE\n\nwords".to_vec(),
                true,
            ),
            ("spaces.bin", binary(b"collapse  these words"), false),
        ],
    ));
    // Target 7: normalised ASCII text only.
    c.push(case(
        "t.ndb",
        ndb("Herd.Ascii", 7, "*", b"document.write(shellcode"),
        vec![
            ("ascii.txt", b"Document.Write(ShellCode)".to_vec(), true),
            ("ascii-raw.bin", binary(b"document.write(shellcode"), false),
            (
                "ascii.exe",
                cat(&[&pe_plain(), b"document.write(shellcode"]),
                false,
            ),
        ],
    ));

    // HTML: comments go, tags are lower-cased, attribute quotes become '"'.
    c.push(case(
        "t.ndb",
        ndb("Herd.Html.Iframe", 3, "*", b"<iframe src=\"http://bad.example/x\""),
        vec![
            (
                "iframe.html",
                b"<HTML><BODY>\n<IFRAME   SRC='HTTP://BAD.example/x' width=0></IFRAME></BODY></HTML>".to_vec(),
                true,
            ),
            // The normalised bytes in a file that is not HTML: target 3 does not apply.
            ("iframe.txt", b"iframe src=\"http://bad.example/x\"".to_vec(), false),
        ],
    ));
    c.push(case(
        "t.ndb",
        ndb("Herd.Html.Comment", 3, "*", b"malwarepayloadjoined"),
        vec![
            (
                "comment.html",
                b"<html>malware<!-- split -->payload<!---->joined</html>".to_vec(),
                true,
            ),
            (
                "comment2.html",
                b"<html>malware payload joined</html>".to_vec(),
                false,
            ),
        ],
    ));
    c.push(case(
        "t.ndb",
        ndb("Herd.Html.Notags", 3, "*", b"hello brave new world"),
        vec![
            (
                "notags.html",
                b"<html><p>Hello</p> <b>BRAVE</b> <i>new</i>\n\n<u>World</u></html>".to_vec(),
                true,
            ),
            (
                "notags2.html",
                b"<html><p>Hello</p> <b>BRAVE</b> <i>old</i> world</html>".to_vec(),
                false,
            ),
        ],
    ));
    c.push(case(
        "t.ndb",
        ndb("Herd.Html.Entities", 3, "*", b"abc<script>x"),
        vec![
            (
                "entities.html",
                b"<html>&#x41;&#66;c&lt;script&gt;x</html>".to_vec(),
                true,
            ),
            (
                "entities2.html",
                b"<html>&#x41;&#66;d&lt;script&gt;x</html>".to_vec(),
                false,
            ),
        ],
    ));
    // Target 3 is matched against the normalised views only, never the raw bytes; HTML
    // markers count anywhere in ASCII text.
    c.push(case(
        "t.ndb",
        ndb("Herd.Html.Raw", 3, "*", b"RAW-CASE-Marker"),
        vec![
            (
                "early.html",
                b"<html>RAW-CASE-Marker</html>".to_vec(),
                false,
            ),
            (
                "late.html",
                cat(&[&[b' '; 1100], b"RAW-CASE-Marker <SCRIPT>y</SCRIPT>"]),
                false,
            ),
        ],
    ));
    c.push(case(
        "t.ndb",
        ndb("Herd.Html.Late", 3, "*", b"late-marker <script>x</script>"),
        vec![(
            "late2.html",
            cat(&[&[b' '; 1100], b"LATE-Marker <SCRIPT>x</SCRIPT>"]),
            true,
        )],
    ));
    // A logical signature that holds with no match at all is still evaluated.
    c.push(case(
        "counts.ldb",
        (
            format!(
                "Herd.Count.Zero;Engine:81-255,Target:0,FileSize:15-15;0<1;{}",
                hex(b"never-present")
            ),
            "Herd.Count.Zero",
        ),
        vec![
            ("size15.bin", binary(b"xy"), true),
            ("size16.bin", binary(b"xyz"), false),
        ],
    ));

    // Targets by file type: a hit on the type, a miss on the same bytes elsewhere.
    let typed: [(&str, u8, &str, &[u8], &str); 8] = [
        (
            "Herd.Type.Elf",
            6,
            "t.elf",
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            "t-elf.bin",
        ),
        (
            "Herd.Type.Pdf",
            10,
            "t.pdf",
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
            "t-pdf.bin",
        ),
        (
            "Herd.Type.Java",
            12,
            "t.class",
            b"\xca\xfe\xba\xbe\x00\x00\x00\x34",
            "t-java.bin",
        ),
        (
            "Herd.Type.MachO",
            9,
            "t.macho",
            b"\xcf\xfa\xed\xfe\x07\x00\x00\x01",
            "t-macho.bin",
        ),
        (
            "Herd.Type.Gif",
            5,
            "t.gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00",
            "t-gif.bin",
        ),
        (
            "Herd.Type.Mail",
            4,
            "t.eml",
            b"From: a@example.com\nTo: b@example.com\nSubject: hi\n\n",
            "t-mail.bin",
        ),
        ("Herd.Type.Pe", 1, "t.exe", &[], "t-pe.bin"),
        (
            "Herd.Type.Swf",
            11,
            "t.swf",
            b"FWS\x0a\x40\x00\x00\x00",
            "t-swf.bin",
        ),
    ];
    for (name, target, file, header, other) in typed {
        let marker = format!("typed-marker-for-{name}");
        let hit = if target == 1 {
            cat(&[&pe_plain(), marker.as_bytes()])
        } else {
            cat(&[header, marker.as_bytes(), b"\n"])
        };
        c.push(case(
            "types.ndb",
            ndb(name, target, "*", marker.as_bytes()),
            vec![(file, hit, true), (other, binary(marker.as_bytes()), false)],
        ));
    }

    // PE-relative offsets: one image, each signature a hit or a near miss on it.
    let pe_sigs: [(&str, &str, &[u8], bool); 8] = [
        ("Herd.Pe.Ep", "EP+0", b"HERD-EP-CODE-015", true),
        ("Herd.Pe.EpShifted", "EP+1", b"HERD-EP-CODE-015", false),
        ("Herd.Pe.EpMinus", "EP-16,16", b"HERD-EP-CODE-015", true),
        ("Herd.Pe.S1", "S1+0", b"HERD-SECTION-ONE", true),
        ("Herd.Pe.S0", "S0+0", b"HERD-SECTION-ONE", false),
        ("Herd.Pe.Last", "SL+128", b"HERD-IN-SECTION1", true),
        ("Herd.Pe.Whole", "SE1", b"HERD-IN-SECTION1", true),
        ("Herd.Pe.WholeMiss", "SE0", b"HERD-IN-SECTION1", false),
    ];
    for (i, (name, offset, pattern, hit)) in pe_sigs.into_iter().enumerate() {
        // The first case carries the image; the others name the same file.
        let files = if i == 0 {
            vec![("pe.exe", pe_file(), hit)]
        } else {
            vec![("pe.exe", Vec::new(), hit)]
        };
        c.push(case("pe.ndb", ndb(name, 1, offset, pattern), files));
    }
    c.push(case(
        "pe.ldb",
        (
            format!(
                "Herd.Pe.Tdb;Engine:81-255,Target:1,EntryPoint:528-528,NumberOfSections:2-2;0&1;EP+0:{};{}",
                hex(b"HERD-EP"),
                hex(b"HERD-SECTION")
            ),
            "Herd.Pe.Tdb",
        ),
        vec![("pe.exe", Vec::new(), true)],
    ));
    c.push(case(
        "pe.ldb",
        (
            format!(
                "Herd.Pe.TdbMiss;Engine:81-255,Target:1,NumberOfSections:3-9;0;{}",
                hex(b"HERD-SECTION")
            ),
            "Herd.Pe.TdbMiss",
        ),
        vec![("pe.exe", Vec::new(), false)],
    ));

    // Match counts.
    c.push(case(
        "counts.ldb",
        (
            format!(
                "Herd.Count.Gt;Engine:81-255,Target:0;0>2;{}",
                hex(b"count-me!")
            ),
            "Herd.Count.Gt",
        ),
        vec![
            ("three.bin", binary(b"count-me! count-me! count-me!"), true),
            ("two.bin", binary(b"count-me! count-me!"), false),
        ],
    ));
    c.push(case(
        "counts.ldb",
        (
            format!(
                "Herd.Count.Eq;Engine:81-255,Target:0;0=2&1;{};{}",
                hex(b"twice-exact"),
                hex(b"and-this")
            ),
            "Herd.Count.Eq",
        ),
        vec![
            ("eq2.bin", binary(b"twice-exact twice-exact and-this"), true),
            (
                "eq3.bin",
                binary(b"twice-exact twice-exact twice-exact and-this"),
                false,
            ),
        ],
    ));
    c.push(case(
        "counts.ldb",
        (
            format!(
                "Herd.Count.Distinct;Engine:81-255,Target:0;(0|1)>2,2;{};{}",
                hex(b"alpha-part"),
                hex(b"beta-part")
            ),
            "Herd.Count.Distinct",
        ),
        vec![
            (
                "distinct.bin",
                binary(b"alpha-part alpha-part beta-part"),
                true,
            ),
            (
                "same.bin",
                binary(b"alpha-part alpha-part alpha-part"),
                false,
            ),
        ],
    ));

    // PCRE subsignatures: triggered by subsignature 0, with flags, offsets and counts.
    c.push(case(
        "pcre.ldb",
        (
            format!(
                "Herd.Pcre.Basic;Engine:81-255,Target:0;0&1;{};0/evil[0-9]{{3}}\\.exe/i",
                hex(b"pcre-anchor")
            ),
            "Herd.Pcre.Basic",
        ),
        vec![
            ("pcre.bin", binary(b"pcre-anchor EVIL123.EXE"), true),
            ("pcre-short.bin", binary(b"pcre-anchor evil12.exe"), false),
            (
                "pcre-untriggered.bin",
                binary(b"pcre-anchr evil123.exe"),
                false,
            ),
        ],
    ));
    c.push(case(
        "pcre.ldb",
        (
            format!(
                "Herd.Pcre.Offset;Engine:81-255,Target:0;0&1;{};11:0/pcre-at-eleven/",
                hex(b"pcre-at")
            ),
            "Herd.Pcre.Offset",
        ),
        vec![
            ("pcre-at.bin", binary(b"pcre-at-eleven"), true),
            ("pcre-not-at.bin", binary(b" pcre-at-eleven"), false),
        ],
    ));
    c.push(case(
        "pcre.ldb",
        (
            format!(
                "Herd.Pcre.Global;Engine:81-255,Target:0;0&1>2;{};0/g[a-z]lob/g",
                hex(b"glob-trigger")
            ),
            "Herd.Pcre.Global",
        ),
        vec![
            ("glob3.bin", binary(b"glob-trigger galob gblob gclob"), true),
            ("glob2.bin", binary(b"glob-trigger galob gblob"), false),
        ],
    ));

    // Byte comparisons (binary values) after where a subsignature matched.
    c.push(case(
        "bcmp.ldb",
        (
            format!(
                "Herd.Bcmp.Le;Engine:81-255,Target:0;0&1;{};0(>>9#il2#=0x1234)",
                hex(b"bcmp-le-h")
            ),
            "Herd.Bcmp.Le",
        ),
        vec![
            ("bcmp-le.bin", binary(b"bcmp-le-h\x34\x12"), true),
            ("bcmp-le-miss.bin", binary(b"bcmp-le-h\x35\x12"), false),
        ],
    ));
    c.push(case(
        "bcmp.ldb",
        (
            format!(
                "Herd.Bcmp.Be;Engine:81-255,Target:0;0&1;{};0(>>9#ib4#>1000,<2000)",
                hex(b"bcmp-be-h")
            ),
            "Herd.Bcmp.Be",
        ),
        vec![
            ("bcmp-be.bin", binary(b"bcmp-be-h\x00\x00\x05\xdc"), true),
            (
                "bcmp-be-miss.bin",
                binary(b"bcmp-be-h\x00\x00\x07\xd0"),
                false,
            ),
        ],
    ));
    c.push(case(
        "bcmp.ldb",
        (
            format!(
                "Herd.Bcmp.Back;Engine:81-255,Target:0;0&1;{};0(<<2#ib1#=65)",
                hex(b"bcmp-back")
            ),
            "Herd.Bcmp.Back",
        ),
        vec![
            ("bcmp-back.bin", binary(b"A.bcmp-back"), true),
            ("bcmp-back-miss.bin", binary(b"B.bcmp-back"), false),
        ],
    ));

    // Container metadata (.cdb): what the zip's directory or the tar's headers list.
    let doc = cat(&[b"quarterly figures ", &[b'.'; 1500]]);
    let doc2 = cat(&[b"quarterly figures ", &[b'.'; 1600]]);
    c.push(case(
        "meta.cdb",
        (
            "Herd.Cdb.DoubleExt:CL_TYPE_ZIP:*:\\.pdf\\.exe$:*:*:0:*:*:*".to_owned(),
            "Herd.Cdb.DoubleExt",
        ),
        vec![
            (
                "double-ext.zip",
                zip(&[
                    ("readme.txt", b"hello", false),
                    ("invoice.pdf.exe", &doc, true),
                ]),
                true,
            ),
            ("single-ext.zip", zip(&[("invoice.pdf", &doc, true)]), false),
            ("double-ext.tar", tar("invoice.pdf.exe", &doc), false),
        ],
    ));
    c.push(case(
        "meta.cdb",
        (
            "Herd.Cdb.Sizes:*:*:*:*:1618:*:2:*:*".to_owned(),
            "Herd.Cdb.Sizes",
        ),
        vec![
            (
                "second.zip",
                zip(&[("a", b"x", false), ("b", &doc2, true)]),
                true,
            ),
            (
                "first.zip",
                zip(&[("b", &doc2, true), ("a", b"x", false)]),
                false,
            ),
        ],
    ));
    c.push(case(
        "meta.cdb",
        (
            "Herd.Cdb.Tar:CL_TYPE_POSIX_TAR:1000-4000:^payload[0-9]+\\.bin$:*:*:*:1:*:*".to_owned(),
            "Herd.Cdb.Tar",
        ),
        vec![
            ("payload.tar", tar("payload42.bin", b"x"), true),
            ("payload-name.tar", tar("my-payload42.bin", b"x"), false),
        ],
    ));

    // Container: only when extracted from a zip.
    let member = cat(&[b"in-container-marker ", &[b'.'; 3000]]);
    c.push(case(
        "container.ldb",
        (
            format!(
                "Herd.Container.Zip;Engine:81-255,Target:0,Container:CL_TYPE_ZIP;0;{}",
                hex(b"in-container-marker")
            ),
            "Herd.Container.Zip",
        ),
        vec![
            ("member.zip", zip(&[("m.bin", &member, true)]), true),
            ("member.bin", member.clone(), false),
        ],
    ));
    c
}

/// Database files (name, text) and the (file, signature) detections expected.
type Allowances = (Vec<(&'static str, String)>, BTreeSet<(String, String)>);

/// The allow-lists: an `.fp` hash makes a detected file (or a whole archive) clean, `.ign2`
/// drops a signature by name.
fn allow_cases(files: &mut Vec<(&'static str, Vec<u8>)>) -> Allowances {
    let listed = binary(b"allow-listed-marker one");
    let other = binary(b"allow-listed-marker two");
    let archive = zip(&[("inner.bin", &binary(b"allow-listed-marker three"), false)]);
    let md5 = |d: &[u8]| {
        use md5::Digest as _;
        hex(&md5::Md5::digest(d))
    };
    let dbs = vec![
        (
            "allow.ndb",
            format!(
                "Herd.Allow:0:*:{}\nHerd.Ignored:0:*:{}\nHerd.Ignored.Longer:0:*:{}",
                hex(b"allow-listed-marker"),
                hex(b"ignored-marker"),
                hex(b"ignored-longer-marker")
            ),
        ),
        (
            "allow.fp",
            format!(
                "{}:{}:Herd.Clean.File\n{}:{}:Herd.Clean.Zip",
                md5(&listed),
                listed.len(),
                md5(&archive),
                archive.len()
            ),
        ),
        ("allow.ign2", "Herd.Ignored".to_owned()),
    ];
    files.push(("listed.bin", listed));
    files.push(("other.bin", other));
    files.push(("listed.zip", archive));
    files.push(("ignored.bin", binary(b"ignored-marker")));
    files.push(("ignored-longer.bin", binary(b"ignored-longer-marker")));
    let expected = [
        ("other.bin", "Herd.Allow"),
        ("ignored-longer.bin", "Herd.Ignored.Longer"),
    ]
    .iter()
    .map(|(f, n)| (f.to_string(), n.to_string()))
    .collect();
    (dbs, expected)
}

fn herd_detections(
    dbs: &BTreeMap<String, String>,
    files: &[(&str, Vec<u8>)],
) -> BTreeSet<(String, String)> {
    let mut db = Database::new();
    for (name, text) in dbs {
        let errors = db.load(name, text.as_bytes());
        assert!(errors.is_empty(), "{errors:?}");
    }
    let engine = Engine::new(&db);
    let scanner = Scanner {
        engine: &engine,
        limits: Limits::default(),
        options: MatchOptions {
            all_matches: true,
            ..MatchOptions::default()
        },
    };
    let mut found = BTreeSet::new();
    for (file, data) in files {
        let report = scanner.scan(data, &mut Scratch::default());
        assert_eq!(report.error, None, "{file}");
        for d in report.detections {
            found.insert((file.to_string(), d.name.to_string()));
        }
    }
    found
}

fn clamscan_detections(dir: &Path) -> Option<BTreeSet<(String, String)>> {
    let version = Command::new("clamscan").arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        println!(
            "skipped the clamscan comparison: clamscan is not on PATH (apt-get install clamav)"
        );
        return None;
    }
    let out = Command::new("clamscan")
        .args(["--allmatch", "--no-summary", "-r", "-d"])
        .arg(dir.join("sigs"))
        .arg(dir.join("files"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "clamscan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        stdout
            .lines()
            .filter_map(|l| l.strip_suffix(" FOUND"))
            .filter_map(|l| l.rsplit_once(": "))
            .map(|(path, name)| {
                let file = Path::new(path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                // clamscan marks signatures outside its official databases.
                (file, name.trim_end_matches(".UNOFFICIAL").to_owned())
            })
            .collect(),
    )
}

#[test]
fn same_detections_as_clamscan() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let mut dbs: BTreeMap<String, String> = BTreeMap::new();
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut expected = BTreeSet::new();
    for c in &cases {
        let text = dbs.entry(c.db.to_owned()).or_default();
        text.push_str(&c.line);
        text.push('\n');
        for (f, data, hit) in &c.files {
            if !data.is_empty() {
                files.push((f, data.clone()));
            }
            if *hit {
                expected.insert((f.to_string(), c.name.to_owned()));
            }
        }
    }
    let (allow_dbs, allow_expected) = allow_cases(&mut files);
    for (name, text) in allow_dbs {
        dbs.insert(name.to_owned(), text + "\n");
    }
    expected.extend(allow_expected);

    let herd = herd_detections(&dbs, &files);
    let missing: Vec<_> = expected.difference(&herd).collect();
    let extra: Vec<_> = herd.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "herd differs from the expected detections\nmissing: {missing:?}\nextra: {extra:?}"
    );

    std::fs::create_dir_all(dir.path().join("sigs")).unwrap();
    std::fs::create_dir_all(dir.path().join("files")).unwrap();
    for (name, text) in &dbs {
        std::fs::write(dir.path().join("sigs").join(name), text).unwrap();
    }
    let names: BTreeSet<&str> = files.iter().map(|(f, _)| *f).collect();
    assert_eq!(names.len(), files.len(), "file names must be unique");
    for (f, data) in &files {
        std::fs::write(dir.path().join("files").join(f), data).unwrap();
    }
    let Some(clam) = clamscan_detections(dir.path()) else {
        return;
    };
    let clam_only: Vec<_> = clam.difference(&herd).collect();
    let herd_only: Vec<_> = herd.difference(&clam).collect();
    assert!(
        clam_only.is_empty() && herd_only.is_empty(),
        "herd and clamscan disagree\nclamscan only: {clam_only:?}\nherd only: {herd_only:?}"
    );
}
