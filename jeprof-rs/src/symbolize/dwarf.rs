//! DWARF lookups through addr2line: function, file, line and inlined frames of an address.
//! Sections are borrowed from the memory-mapped file (decompressed ones are owned by
//! [`Sections`]), so nothing is copied for uncompressed debug info.

use std::borrow::Cow;
use std::io::Read;

use addr2line::gimli::{self, EndianSlice, RunTimeEndian};
use object::{CompressionFormat, Object, ObjectSection};

use crate::demangle::demangle;
use crate::symbolize::SymFrame;

/// The DWARF sections of one object file.
pub struct Sections<'data> {
    sections: gimli::DwarfSections<Cow<'data, [u8]>>,
    endian: RunTimeEndian,
}

pub type Context<'a> = addr2line::Context<EndianSlice<'a, RunTimeEndian>>;

impl<'data> Sections<'data> {
    /// `None` when the file has no `.debug_info`.
    pub fn load(file: &object::File<'data>) -> Option<Sections<'data>> {
        let info = file
            .section_by_name(".debug_info")
            .or_else(|| file.section_by_name(".zdebug_info"))?;
        if info.size() == 0 {
            return None;
        }
        let endian = if file.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let sections = gimli::DwarfSections::load(|id: gimli::SectionId| -> Result<_, ()> {
            let data = file
                .section_by_name(id.name())
                .and_then(|s| uncompressed(&s))
                .unwrap_or(Cow::Borrowed(&[][..]));
            Ok(data)
        })
        .ok()?;
        Some(Sections { sections, endian })
    }

    /// An addr2line context borrowing these sections.
    pub fn context(&self) -> Option<Context<'_>> {
        let dwarf = self.sections.borrow(|s| EndianSlice::new(s, self.endian));
        addr2line::Context::from_dwarf(dwarf).ok()
    }
}

/// Largest ratio of uncompressed to compressed size that zlib can reach (about 1032:1; DWARF
/// compresses 3 to 10 times).
const MAX_RATIO: u64 = 1032;

/// A section's bytes, decompressed if need be, or `None` if they cannot be had. The size a
/// compressed section claims is read from the file, so it is not trusted for allocating (any
/// claim the allocator would grant, 20 times the real size or half the machine's memory, used
/// to be reserved and zero-filled before inflating): zlib data is inflated into a buffer that
/// grows with what it really produces, up to the claim; other formats (zstd) are decompressed
/// only when the claim is at most [`MAX_RATIO`] times the compressed size.
fn uncompressed<'data>(section: &impl ObjectSection<'data>) -> Option<Cow<'data, [u8]>> {
    let compressed = section.compressed_data().ok()?;
    match compressed.format {
        CompressionFormat::None => Some(Cow::Borrowed(compressed.data)),
        CompressionFormat::Zlib => {
            let claim = compressed.uncompressed_size;
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(compressed.data)
                .take(claim.saturating_add(1))
                .read_to_end(&mut out)
                .ok()?;
            (out.len() as u64 == claim).then_some(Cow::Owned(out))
        }
        _ if compressed.uncompressed_size / MAX_RATIO <= compressed.data.len() as u64 => {
            compressed.decompress().ok()
        }
        _ => None,
    }
}

/// Frames for `svma`, innermost (most deeply inlined) first. Empty when DWARF does not cover
/// the address.
pub fn frames(ctx: &Context<'_>, svma: u64) -> Vec<SymFrame> {
    let mut out = Vec::new();
    let Ok(mut iter) = ctx.find_frames(svma).skip_all_loads() else {
        return out;
    };
    while let Ok(Some(frame)) = iter.next() {
        let function = frame
            .function
            .as_ref()
            .and_then(|f| f.raw_name().ok())
            .map(|name| demangle(&name));
        let (file, line) = match frame.location {
            Some(loc) => (loc.file.map(str::to_string), loc.line),
            None => (None, None),
        };
        out.push(SymFrame {
            function,
            file,
            line,
        });
    }
    out
}
