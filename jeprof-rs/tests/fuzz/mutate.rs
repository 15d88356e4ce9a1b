//! Seeded mutations: a small PRNG, line-aware mutations for the text formats (dumps, perf maps,
//! `JEPROF_CONF`), and field-aware mutations for ELF files.

/// SplitMix64: tiny, fast, and good enough to pick mutations. Each input gets its own
/// generator from (run seed, input index), so one input can be rebuilt without the others.
pub struct Rng(u64);

impl Rng {
    pub fn for_input(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(0xa076_1d64_78bd_642f));
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length biased towards small values: 1, 2, 4, ... up to `max`.
    pub fn small(&mut self, max: usize) -> usize {
        let bits = self.below(usize::BITS as usize - max.max(1).leading_zeros() as usize + 1);
        (1 + self.below(1 << bits)).min(max.max(1))
    }
}

/// Numbers that break parsers: signs, 2^32, 2^63, 2^64 and past it, floats, non-ASCII digits.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "-0",
    "+1",
    "00000000000000000000000000000000007",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "1e308",
    "1.5",
    "NaN",
    "inf",
    "0x",
    "0x0",
    "0xffffffffffffffff",
    "0x10000000000000000",
    "ffffffffffffffff",
    "fffffffffffffffff",
    "0XFFFF",
    "-0x1",
    "\u{0663}",
    "1\u{0663}",
    "",
];

/// Byte sequences that are not UTF-8, or are odd UTF-8: lone continuation, truncated
/// sequences, overlong NUL, a surrogate, U+FEFF, non-breaking and wide spaces.
const ODD_BYTES: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\x80",
    b"\xc3",
    b"\xe2\x82",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\xc2\xa0",
    b"\xe3\x80\x80",
    b"\r",
    b"\t",
    b"\x0b",
    b"\x0c",
    b"\n",
    b"\r\n",
];

fn line_spans(data: &[u8], sep: u8) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == sep {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < data.len() {
        out.push((start, data.len()));
    }
    out
}

/// Runs of ASCII alphanumerics (with `.`, `+`, `-`) that contain a digit: counts, addresses,
/// periods, offsets.
fn number_spans(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let word = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-');
        if word(data[i]) {
            let start = i;
            while i < data.len() && word(data[i]) {
                i += 1;
            }
            if data[start..i].iter().any(u8::is_ascii_digit) {
                out.push((start, i));
            }
        } else {
            i += 1;
        }
    }
    out
}

fn random_number(rng: &mut Rng) -> String {
    let v = match rng.below(4) {
        0 => rng.next(),
        1 => rng.next() >> rng.below(64),
        2 => 1u64 << rng.below(64),
        _ => (1u64 << rng.below(64)).wrapping_sub(1),
    };
    match rng.below(3) {
        0 => format!("{v}"),
        1 => format!("{v:x}"),
        _ => format!("{v:#x}"),
    }
}

/// How a text format is built: its separator (`\n` or `,`) and tokens worth inserting.
pub struct TextFormat {
    pub sep: u8,
    pub tokens: &'static [&'static str],
}

/// Largest text input: enough for a line of a million frames.
const MAX_TEXT: usize = 4 << 20;

/// 1 to 4 stacked mutations of one seed, sometimes spliced with another.
pub fn text(rng: &mut Rng, seeds: &[Vec<u8>], format: &TextFormat) -> Vec<u8> {
    let mut data = rng.pick(seeds).clone();
    let rounds = rng.small(4);
    for _ in 0..rounds {
        text_once(rng, &mut data, seeds, format);
        // Long lines and repeated lines multiply: keep inputs to a few MiB.
        data.truncate(MAX_TEXT);
    }
    data
}

fn text_once(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>], format: &TextFormat) {
    let sep = format.sep;
    let lines = line_spans(data, sep);
    let pos = rng.below(data.len() + 1);
    let line = (!lines.is_empty()).then(|| *rng.pick(&lines));
    match rng.below(17) {
        // Flip bits of a byte.
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        // Overwrite a byte with a structural or odd one.
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] = *rng.pick(b"\0\xff\x80\n\r\t :@[]-x#09,/*t");
        }
        // Truncate: anywhere, or next to a line end.
        2 => match line {
            Some((_, end)) if rng.chance(2) => {
                let cut = (end + rng.below(3)).saturating_sub(1).min(data.len());
                data.truncate(cut);
            }
            _ => data.truncate(pos),
        },
        // Delete lines.
        3 if !lines.is_empty() => {
            let i = rng.below(lines.len());
            let j = (i + rng.small(8)).min(lines.len());
            data.drain(lines[i].0..lines[j - 1].1);
        }
        // Duplicate a line (next to itself, or elsewhere), possibly many times.
        4 if line.is_some() => {
            let (s, e) = line.unwrap();
            let copy = data[s..e].to_vec();
            let at = if rng.chance(2) { e } else { rng.pick(&lines).0 };
            let times = if rng.chance(8) { rng.small(1000) } else { 1 };
            let times = times.min(MAX_TEXT / copy.len().max(1)).max(1);
            let block: Vec<u8> = copy
                .iter()
                .copied()
                .cycle()
                .take(copy.len() * times)
                .collect();
            data.splice(at..at, block);
        }
        // Swap two lines.
        5 if lines.len() >= 2 => {
            let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
            let (a, b) = (lines[a.min(b)], lines[a.max(b)]);
            if a != b {
                let mut out = data[..a.0].to_vec();
                out.extend_from_slice(&data[b.0..b.1]);
                out.extend_from_slice(&data[a.1..b.0]);
                out.extend_from_slice(&data[a.0..a.1]);
                out.extend_from_slice(&data[b.1..]);
                *data = out;
            }
        }
        // Replace a number with a nasty one (several times per line sometimes).
        6..=8 => {
            let spans = number_spans(data);
            if !spans.is_empty() {
                let (s, e) = *rng.pick(&spans);
                let n = if rng.chance(3) {
                    random_number(rng)
                } else {
                    rng.pick(NUMBERS).to_string()
                };
                data.splice(s..e, n.into_bytes());
            }
        }
        // Insert NUL, invalid UTF-8, odd whitespace.
        9 => {
            let b = *rng.pick(ODD_BYTES);
            data.splice(pos..pos, b.iter().copied());
        }
        // A very long line: repeat a word, or a run of one character.
        10 => {
            let n = 1 + rng.small(1 << 20);
            let block: Vec<u8> = match line {
                Some((s, e)) if rng.chance(2) && e > s => {
                    let words = number_spans(&data[s..e]);
                    let word = words
                        .last()
                        .map_or(&b"0x1"[..], |&(ws, we)| &data[s + ws..s + we]);
                    let mut unit = vec![b' '];
                    unit.extend_from_slice(word);
                    let reps = (n / unit.len()).max(1);
                    unit.iter()
                        .copied()
                        .cycle()
                        .take(unit.len() * reps)
                        .collect()
                }
                _ => std::iter::repeat_n(*rng.pick(b"9fa ,:x\t@"), n).collect(),
            };
            let at = line.map_or(pos, |(_, e)| e.saturating_sub(1));
            data.splice(at..at, block);
        }
        // Splice in a line of another seed.
        11 => {
            let other = rng.pick(seeds);
            let other_lines = line_spans(other, sep);
            if !other_lines.is_empty() {
                let (s, e) = *rng.pick(&other_lines);
                let at = line.map_or(pos, |l| l.0);
                data.splice(at..at, other[s..e].iter().copied());
            }
        }
        // Insert a structural token (a line of its own, or inside a line).
        12 | 13 => {
            let mut token = rng.pick(format.tokens).as_bytes().to_vec();
            if rng.chance(2) {
                token.push(sep);
                let at = line.map_or(pos, |l| l.0);
                data.splice(at..at, token);
            } else {
                data.splice(pos..pos, token);
            }
        }
        // Join two lines, or turn separators into CRLF.
        14 => {
            if let Some((_, e)) = line
                && e > 0
                && data[e - 1] == sep
            {
                if rng.chance(2) {
                    data.remove(e - 1);
                } else {
                    data.insert(e - 1, b'\r');
                }
            }
        }
        // Delete a few bytes (a colon, a bracket, half a word).
        15 if !data.is_empty() => {
            let n = rng.small(16).min(data.len() - pos.min(data.len() - 1));
            let at = pos.min(data.len() - 1);
            data.drain(at..at + n);
        }
        // Cut the data in the middle of a multi-byte character or a word.
        _ => {
            let spans = number_spans(data);
            if !spans.is_empty() {
                let (s, e) = *rng.pick(&spans);
                data.truncate(s + rng.below(e - s + 1));
            }
        }
    }
}

/// An ELF seed with the byte ranges worth aiming at.
pub struct ElfSeed {
    pub bytes: Vec<u8>,
    /// How often this seed is picked, relative to the others (a big file costs more per input).
    pub weight: u32,
    /// `(weight, start, end)`: headers, section headers, debug sections, `.eh_frame`, symbols.
    pub regions: Vec<(u32, usize, usize)>,
    /// Offsets of the 64-byte section headers of the debug and symbol sections.
    pub section_headers: Vec<usize>,
    /// Offsets of the 56-byte program headers.
    pub program_headers: Vec<usize>,
}

impl ElfSeed {
    pub fn new(bytes: Vec<u8>, weight: u32) -> ElfSeed {
        use object::read::elf::{FileHeader, SectionHeader};
        let mut regions = vec![(4, 0, 64.min(bytes.len()))];
        let mut section_headers = Vec::new();
        let mut program_headers = Vec::new();
        let le = object::Endianness::Little;
        if let Ok(header) = object::elf::FileHeader64::<object::Endianness>::parse(&*bytes) {
            let phoff = header.e_phoff(le) as usize;
            let phnum = header.e_phnum(le) as usize;
            regions.push((2, phoff, phoff + 56 * phnum));
            program_headers.extend((0..phnum).map(|i| phoff + 56 * i));
            let shoff = header.e_shoff(le) as usize;
            let shnum = header.e_shnum(le) as usize;
            regions.push((6, shoff, shoff + 64 * shnum));
            if let Ok(sections) = header.sections(le, &*bytes) {
                for (i, section) in sections.iter().enumerate() {
                    let name = sections.section_name(le, section).unwrap_or_default();
                    let name = String::from_utf8_lossy(name);
                    let weight = if name.starts_with(".debug_info")
                        || name.starts_with(".debug_line")
                        || name.starts_with(".debug_abbrev")
                    {
                        8
                    } else if name.starts_with(".debug")
                        || name.starts_with(".zdebug")
                        || name.starts_with(".eh_frame")
                    {
                        3
                    } else if matches!(
                        &*name,
                        ".symtab" | ".strtab" | ".dynsym" | ".dynstr" | ".note.gnu.build-id"
                    ) || name.starts_with(".gnu_debuglink")
                    {
                        2
                    } else {
                        0
                    };
                    let sh = shoff + 64 * i;
                    if weight > 0 {
                        section_headers.push(sh);
                        if section.sh_type(le) != object::elf::SHT_NOBITS {
                            let (off, size) = section.file_range(le).unwrap_or((0, 0));
                            let (off, size) = (off as usize, size as usize);
                            if size > 0 && off + size <= bytes.len() {
                                regions.push((weight, off, off + size));
                            }
                        }
                    }
                }
            }
        }
        regions.retain(|&(_, s, e)| s < e && e <= bytes.len());
        ElfSeed {
            bytes,
            weight,
            regions,
            section_headers,
            program_headers,
        }
    }
}

/// `SHF_COMPRESSED`: the section starts with an `Elf64_Chdr` and holds compressed data.
const SHF_COMPRESSED: u64 = 0x800;

/// Values for header fields: zero, small, all ones, sign bits, around the file size.
fn field_value(rng: &mut Rng, old: u64, file_len: u64) -> u64 {
    match rng.below(10) {
        0 => 0,
        1 => 1 + rng.below(64) as u64,
        2 => u64::MAX,
        3 => u64::MAX >> 1,
        4 => 1 << 31,
        5 => u32::MAX as u64,
        6 => file_len.wrapping_add(rng.below(3) as u64).wrapping_sub(1),
        7 => old.wrapping_add(rng.below(17) as u64).wrapping_sub(8),
        8 => old.wrapping_mul(1 << (1 + rng.below(16))),
        _ => rng.next(),
    }
}

fn write_le(data: &mut [u8], at: usize, width: usize, value: u64) {
    if at + width <= data.len() {
        data[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

fn read_le(data: &[u8], at: usize, width: usize) -> u64 {
    let mut b = [0u8; 8];
    if at + width <= data.len() {
        b[..width].copy_from_slice(&data[at..at + width]);
    }
    u64::from_le_bytes(b)
}

/// One to three mutations of one ELF seed.
pub fn elf(rng: &mut Rng, seeds: &[ElfSeed]) -> Vec<u8> {
    let total: u32 = seeds.iter().map(|s| s.weight).sum();
    let mut w = rng.below(total.max(1) as usize) as u32;
    let seed = seeds
        .iter()
        .find(|s| {
            let hit = w < s.weight;
            w = w.saturating_sub(s.weight);
            hit
        })
        .unwrap_or(&seeds[0]);
    let mut data = seed.bytes.clone();
    for _ in 0..1 + rng.small(3) / 2 {
        elf_once(rng, &mut data, seed);
    }
    data
}

fn elf_once(rng: &mut Rng, data: &mut Vec<u8>, seed: &ElfSeed) {
    let file_len = data.len() as u64;
    if data.is_empty() {
        return;
    }
    let total: u32 = seed.regions.iter().map(|r| r.0).sum();
    let mut w = rng.below(total.max(1) as usize) as u32;
    let (start, end) = seed
        .regions
        .iter()
        .find(|r| {
            if w < r.0 {
                true
            } else {
                w -= r.0;
                false
            }
        })
        .map_or((0, data.len()), |r| (r.1, r.2.min(data.len())));
    if start >= end {
        return;
    }
    let at = start + rng.below(end - start);
    match rng.below(13) {
        // Flip a few bits.
        0 | 1 => {
            for _ in 0..rng.small(8) {
                let i = start + rng.below(end - start);
                data[i] ^= 1 << rng.below(8);
            }
        }
        // An interesting value of 1, 2, 4 or 8 bytes.
        2 | 3 => {
            let width = 1 << rng.below(4);
            let old = read_le(data, at, width);
            write_le(data, at, width, field_value(rng, old, file_len));
        }
        // A field of a section header: type, flags (SHF_COMPRESSED), offset, size, link,
        // entry size.
        4..=6 if !seed.section_headers.is_empty() => {
            let sh = *rng.pick(&seed.section_headers);
            let (field, width) = *rng.pick(&[(4, 4), (8, 8), (24, 8), (32, 8), (40, 4), (56, 8)]);
            let old = read_le(data, sh + field, width);
            let value = if field == 8 && rng.chance(2) {
                old ^ SHF_COMPRESSED
            } else {
                field_value(rng, old, file_len)
            };
            write_le(data, sh + field, width, value);
        }
        // A field of a program header: type, flags (PF_X), offset, address, sizes, alignment.
        10 | 11 if !seed.program_headers.is_empty() && rng.chance(2) => {
            let ph = *rng.pick(&seed.program_headers);
            let (field, width) =
                *rng.pick(&[(0, 4), (4, 4), (8, 8), (16, 8), (32, 8), (40, 8), (48, 8)]);
            let old = read_le(data, ph + field, width);
            let value = if field == 4 && rng.chance(2) {
                old ^ 1
            } else {
                field_value(rng, old, file_len)
            };
            write_le(data, ph + field, width, value);
        }
        // Turn a debug section into a "compressed" one claiming some uncompressed size.
        7 if !seed.section_headers.is_empty() => {
            let sh = *rng.pick(&seed.section_headers);
            let flags = read_le(data, sh + 8, 8) | SHF_COMPRESSED;
            write_le(data, sh + 8, 8, flags);
            let off = read_le(data, sh + 24, 8) as usize;
            write_le(data, off, 4, 1); // ELFCOMPRESS_ZLIB
            let old = read_le(data, off + 8, 8);
            write_le(data, off + 8, 8, field_value(rng, old, file_len));
        }
        // A runaway LEB128 or a zeroed run.
        8 => {
            let n = rng.small(64).min(end - at);
            let fill = if rng.chance(2) { 0xff } else { 0 };
            data[at..at + n].fill(fill);
        }
        // Copy bytes from elsewhere in the file.
        9 => {
            let n = rng.small(256).min(end - at);
            let from = rng.below(data.len() - n + 1);
            let chunk = data[from..from + n].to_vec();
            data[at..at + n].copy_from_slice(&chunk);
        }
        // Truncate inside the region.
        12 if rng.chance(4) => data.truncate(at),
        // Delete or insert bytes (shifts everything after).
        _ => {
            if rng.chance(2) {
                let n = rng.small(32).min(data.len() - at);
                data.drain(at..at + n);
            } else {
                let n = rng.small(32);
                data.splice(at..at, std::iter::repeat_n(rng.next() as u8, n));
            }
        }
    }
}
