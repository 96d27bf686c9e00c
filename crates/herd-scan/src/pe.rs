//! A small PE (Windows executable) header and section table reader, pure: what ClamAV's
//! `cli_peheader` computes for signature offsets — the entry point as a file offset and each
//! section's raw start and size, aligned as ClamAV aligns them — and nothing else.
//!
//! ClamAV reads headers leniently for this purpose (`CLI_PEHEADER_OPT_NONE`): bad alignments
//! are tolerated, a section past the end of the file keeps its place with size 0, a section
//! cut by the end of the file is shortened. A file it refuses (no `PE\0\0`, no sections or
//! more than 96, values with the sign bit set, an entry point outside every section) has no
//! layout, and executable-relative offsets then match nowhere.

/// ClamAV's limit on the section count (`PE_MAXSECTIONS`).
pub const MAX_SECTIONS: usize = 96;

/// One section as signatures see it: where its bytes start in the file and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub raw: u64,
    pub raw_size: u64,
}

/// What executable-relative offsets are computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeLayout {
    /// The entry point as a file offset.
    pub entry_point: u64,
    pub sections: Vec<Section>,
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Rounds down to a multiple of `a` (`PEALIGN`); `a == 0` leaves `o` alone.
fn align_down(o: u32, a: u32) -> u32 {
    o.checked_div(a).map_or(o, |q| q * a)
}

/// Rounds up to a multiple of `a` (`PESALIGN`), saturating.
fn align_up(o: u32, a: u32) -> u64 {
    if a == 0 {
        u64::from(o)
    } else {
        u64::from(o).div_ceil(u64::from(a)) * u64::from(a)
    }
}

/// The layout of the PE file `data`, or `None` when ClamAV would not compute one.
pub fn parse(data: &[u8]) -> Option<ExeLayout> {
    if !data.starts_with(b"MZ") {
        return None;
    }
    let pe = u32_at(data, 0x3c)? as usize;
    if pe == 0 || data.get(pe..pe.checked_add(4)?)? != b"PE\0\0" {
        return None;
    }
    let coff = pe + 4;
    let nsections = usize::from(u16_at(data, coff + 2)?);
    let optional_size = usize::from(u16_at(data, coff + 16)?);
    if nsections == 0 || nsections > MAX_SECTIONS {
        return None;
    }
    let optional = coff + 20;
    let magic = u16_at(data, optional)?;
    if magic != 0x10b && magic != 0x20b {
        return None;
    }
    // The fields used sit at the same offsets in PE32 and PE32+ optional headers.
    let entry_rva = u32_at(data, optional + 16)?;
    let section_align = u32_at(data, optional + 32)?;
    let mut file_align = u32_at(data, optional + 36)?;
    let header_size = align_up(u32_at(data, optional + 60)?, section_align);

    let table = optional.checked_add(optional_size)?;
    let headers = (0..nsections)
        .map(|i| {
            let at = table + i * 40;
            Some((
                u32_at(data, at + 12)?, // VirtualAddress
                u32_at(data, at + 8)?,  // VirtualSize
                u32_at(data, at + 16)?, // SizeOfRawData
                u32_at(data, at + 20)?, // PointerToRawData
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    // ClamAV's "file alignment fallback": a raw pointer that is a multiple of 512 but not of
    // the declared alignment makes 512 the alignment.
    if file_align != 0x200
        && headers.iter().any(|&(_, _, rsz, raw)| {
            file_align != 0 && rsz != 0 && raw % file_align != 0 && raw % 0x200 == 0
        })
    {
        file_align = 0x200;
    }
    let file_size = data.len() as u64;
    let mut sections = Vec::with_capacity(nsections);
    let mut rvas = Vec::with_capacity(nsections);
    for &(rva, vsz, rsz, raw) in &headers {
        if rva >> 31 != 0 || vsz >> 31 != 0 || (rsz != 0 && raw >> 31 != 0) || rsz >> 31 != 0 {
            return None;
        }
        let mut section = Section {
            raw: u64::from(align_down(raw, file_align)),
            raw_size: align_up(rsz, file_align),
        };
        if section.raw_size != 0 {
            if section.raw >= file_size || u64::from(raw) >= file_size {
                section.raw_size = 0;
            } else if section.raw + section.raw_size > file_size {
                section.raw_size = file_size - section.raw;
            }
        }
        sections.push(section);
        rvas.push(u64::from(align_down(rva, section_align)));
    }
    let entry_point = raw_address(
        u64::from(entry_rva),
        &sections,
        &rvas,
        file_size,
        header_size,
    )?;
    Some(ExeLayout {
        entry_point,
        sections,
    })
}

/// `cli_rawaddr`: an RVA in the headers is its own file offset; otherwise the last section
/// whose raw bytes cover it decides.
fn raw_address(
    rva: u64,
    sections: &[Section],
    rvas: &[u64],
    file_size: u64,
    header_size: u64,
) -> Option<u64> {
    if rva < header_size {
        return (rva < file_size).then_some(rva);
    }
    sections
        .iter()
        .zip(rvas)
        .rev()
        .find(|&(s, &start)| s.raw_size != 0 && start <= rva && s.raw_size > rva - start)
        .map(|(s, &start)| rva - start + s.raw)
}

/// A minimal PE32 image for tests and fuzz seeds: the given sections (raw pointer, raw
/// size, RVA) and entry point RVA, with 512-byte file and 4 KiB section alignment.
pub fn build(entry_rva: u32, sections: &[(u32, u32, u32)], len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len.max(0x200)];
    d[..2].copy_from_slice(b"MZ");
    d[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    d[0x80..0x84].copy_from_slice(b"PE\0\0");
    let coff = 0x84;
    d[coff..coff + 2].copy_from_slice(&0x14cu16.to_le_bytes());
    d[coff + 2..coff + 4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
    d[coff + 16..coff + 18].copy_from_slice(&0xe0u16.to_le_bytes());
    let opt = coff + 20;
    d[opt..opt + 2].copy_from_slice(&0x10bu16.to_le_bytes());
    d[opt + 16..opt + 20].copy_from_slice(&entry_rva.to_le_bytes());
    d[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes());
    d[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes());
    d[opt + 56..opt + 60].copy_from_slice(&0x10000u32.to_le_bytes()); // SizeOfImage
    d[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
    d[opt + 68..opt + 70].copy_from_slice(&2u16.to_le_bytes()); // Subsystem: GUI
    d[opt + 92..opt + 96].copy_from_slice(&16u32.to_le_bytes()); // NumberOfRvaAndSizes
    let table = opt + 0xe0;
    for (i, &(raw, rsz, rva)) in sections.iter().enumerate() {
        let at = table + i * 40;
        if at + 40 > d.len() {
            break;
        }
        d[at..at + 8].copy_from_slice(format!(".s{i:<6}").as_bytes());
        d[at + 8..at + 12].copy_from_slice(&rsz.to_le_bytes());
        d[at + 12..at + 16].copy_from_slice(&rva.to_le_bytes());
        d[at + 16..at + 20].copy_from_slice(&rsz.to_le_bytes());
        d[at + 20..at + 24].copy_from_slice(&raw.to_le_bytes());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_point_and_sections() {
        let d = build(
            0x1010,
            &[(0x200, 0x200, 0x1000), (0x400, 0x100, 0x2000)],
            0x600,
        );
        let layout = parse(&d).unwrap();
        assert_eq!(layout.entry_point, 0x210);
        assert_eq!(
            layout.sections,
            [
                Section {
                    raw: 0x200,
                    raw_size: 0x200
                },
                // Raw sizes are rounded up to the file alignment.
                Section {
                    raw: 0x400,
                    raw_size: 0x200
                },
            ]
        );
        // An entry point in the headers is its own offset.
        assert_eq!(
            parse(&build(0x40, &[(0x200, 0x200, 0x1000)], 0x400))
                .unwrap()
                .entry_point,
            0x40
        );
    }

    #[test]
    fn refused_layouts() {
        let good = build(0x1010, &[(0x200, 0x200, 0x1000)], 0x400);
        assert!(parse(&good).is_some());
        // Not MZ, no PE signature, no sections, an entry point outside every section.
        assert_eq!(parse(b"ZM"), None);
        let mut d = good.clone();
        d[0x80] = b'X';
        assert_eq!(parse(&d), None);
        assert_eq!(parse(&build(0x1010, &[], 0x400)), None);
        assert_eq!(
            parse(&build(0x9000, &[(0x200, 0x200, 0x1000)], 0x400)),
            None
        );
        // e_lfanew pointing past the end, and every truncation of a good header.
        let mut d = good.clone();
        d[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&d), None);
        for len in 0..0x200 {
            let _ = parse(&good[..len]);
        }
        // A section past the end of the file keeps its index with no bytes.
        let d = build(
            0x1010,
            &[(0x200, 0x200, 0x1000), (0x10000, 0x200, 0x2000)],
            0x400,
        );
        assert_eq!(parse(&d).unwrap().sections[1].raw_size, 0);
    }
}
