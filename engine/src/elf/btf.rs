//! A minimal BTF reader: enough to read BTF-defined maps (`.maps`).
//!
//! It parses every type kind the kernel defines (so that it can walk the
//! type section), keeps the ones map definitions use (INT, PTR, ARRAY,
//! STRUCT, UNION, ENUM, TYPEDEF, CONST, VOLATILE, VAR, DATASEC, FUNC,
//! FUNC_PROTO and the modifiers), checks every type id and string offset
//! when it parses, and rejects chains of modifiers or arrays that loop.

/// Magic number at the start of `.BTF` (little endian).
const BTF_MAGIC: u16 = 0xeb9f;
/// Size of the fixed part of the header.
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type`.
const TYPE_LEN: usize = 12;
/// Longest chain of modifiers, typedefs and array elements followed.
pub const MAX_CHAIN: usize = 32;

/// Why `.BTF` is malformed. Offsets are bytes from the start of `.BTF`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    #[error("offset {offset:#x}: bad magic {magic:#06x} (expected 0xeb9f, little endian)")]
    BadMagic { offset: u64, magic: u16 },
    #[error("offset {offset:#x}: BTF version {version} is not supported")]
    BadVersion { offset: u64, version: u8 },
    #[error("offset {offset:#x}: {what} runs past the end of the section ({end} > {len})")]
    OutOfBounds {
        offset: u64,
        what: &'static str,
        end: u64,
        len: u64,
    },
    #[error("offset {offset:#x}: type {id} has unknown kind {kind}")]
    UnknownKind { offset: u64, id: u32, kind: u32 },
    #[error(
        "offset {offset:#x}: type {id} refers to type {target}, but there are only {count} types"
    )]
    BadTypeId {
        offset: u64,
        id: u32,
        target: u32,
        count: u32,
    },
    #[error(
        "offset {offset:#x}: type {id} has a name offset {name_off} outside the string section"
    )]
    BadString { offset: u64, id: u32, name_off: u32 },
    #[error("offset {offset:#x}: type {id} is part of a loop of modifiers, typedefs or arrays")]
    Loop { offset: u64, id: u32 },
    #[error("offset {offset:#x}: the size of type {id} overflows")]
    SizeOverflow { offset: u64, id: u32 },
    #[error("offset {offset:#x}: type {id} ({kind}) has no size")]
    NoSize {
        offset: u64,
        id: u32,
        kind: &'static str,
    },
}

/// A member of a struct or union.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub type_id: u32,
    /// Bit offset (without the bitfield size when the kind flag is set).
    pub bit_offset: u32,
}

/// A variable in a data section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VarSecinfo {
    pub type_id: u32,
    pub offset: u32,
    pub size: u32,
}

/// A type, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeKind {
    Int { size: u32 },
    Ptr { target: u32 },
    Array { elem: u32, index: u32, nelems: u32 },
    Struct { size: u32, members: Vec<Member> },
    Union { size: u32, members: Vec<Member> },
    Enum { size: u32 },
    Fwd,
    Typedef { target: u32 },
    Volatile { target: u32 },
    Const { target: u32 },
    Restrict { target: u32 },
    Func { proto: u32 },
    FuncProto { ret: u32, params: Vec<u32> },
    Var { target: u32, linkage: u32 },
    Datasec { size: u32, vars: Vec<VarSecinfo> },
    Float { size: u32 },
    DeclTag { target: u32 },
    TypeTag { target: u32 },
    Enum64 { size: u32 },
}

impl TypeKind {
    pub fn name(&self) -> &'static str {
        match self {
            TypeKind::Int { .. } => "int",
            TypeKind::Ptr { .. } => "ptr",
            TypeKind::Array { .. } => "array",
            TypeKind::Struct { .. } => "struct",
            TypeKind::Union { .. } => "union",
            TypeKind::Enum { .. } => "enum",
            TypeKind::Fwd => "fwd",
            TypeKind::Typedef { .. } => "typedef",
            TypeKind::Volatile { .. } => "volatile",
            TypeKind::Const { .. } => "const",
            TypeKind::Restrict { .. } => "restrict",
            TypeKind::Func { .. } => "func",
            TypeKind::FuncProto { .. } => "func_proto",
            TypeKind::Var { .. } => "var",
            TypeKind::Datasec { .. } => "datasec",
            TypeKind::Float { .. } => "float",
            TypeKind::DeclTag { .. } => "decl_tag",
            TypeKind::TypeTag { .. } => "type_tag",
            TypeKind::Enum64 { .. } => "enum64",
        }
    }

    /// The single type this one refers to, for modifiers, typedefs and
    /// other kinds whose meaning is another type.
    fn alias_of(&self) -> Option<u32> {
        match *self {
            TypeKind::Typedef { target }
            | TypeKind::Volatile { target }
            | TypeKind::Const { target }
            | TypeKind::Restrict { target }
            | TypeKind::TypeTag { target } => Some(target),
            _ => None,
        }
    }

    /// Every type id this type refers to.
    fn references(&self) -> Vec<u32> {
        match self {
            TypeKind::Ptr { target }
            | TypeKind::Typedef { target }
            | TypeKind::Volatile { target }
            | TypeKind::Const { target }
            | TypeKind::Restrict { target }
            | TypeKind::Var { target, .. }
            | TypeKind::DeclTag { target }
            | TypeKind::TypeTag { target } => vec![*target],
            TypeKind::Func { proto } => vec![*proto],
            TypeKind::Array { elem, index, .. } => vec![*elem, *index],
            TypeKind::Struct { members, .. } | TypeKind::Union { members, .. } => {
                members.iter().map(|m| m.type_id).collect()
            }
            TypeKind::FuncProto { ret, params } => {
                let mut v = params.clone();
                v.push(*ret);
                v
            }
            TypeKind::Datasec { vars, .. } => vars.iter().map(|v| v.type_id).collect(),
            _ => Vec::new(),
        }
    }
}

/// One type: its name and kind, and where it is in `.BTF`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    pub name: String,
    pub kind: TypeKind,
    /// Byte offset of its `struct btf_type` in `.BTF`.
    pub offset: u64,
}

/// Parsed BTF. Type id 0 is `void`; ids 1.. index [`Btf::types`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Btf {
    types: Vec<Type>,
}

/// A little-endian reader over a byte slice that names what it reads.
struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn u32(&self, off: usize, what: &'static str) -> Result<u32, BtfError> {
        let end = off.checked_add(4);
        match end.and_then(|e| self.data.get(off..e)) {
            Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            None => Err(BtfError::OutOfBounds {
                offset: off as u64,
                what,
                end: off as u64 + 4,
                len: self.data.len() as u64,
            }),
        }
    }
}

impl Btf {
    /// Parses the contents of a `.BTF` section.
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let r = Reader { data };
        if data.len() < HEADER_LEN {
            return Err(BtfError::OutOfBounds {
                offset: 0,
                what: "header",
                end: HEADER_LEN as u64,
                len: data.len() as u64,
            });
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic != BTF_MAGIC {
            return Err(BtfError::BadMagic { offset: 0, magic });
        }
        if data[2] != 1 {
            return Err(BtfError::BadVersion {
                offset: 2,
                version: data[2],
            });
        }
        let hdr_len = r.u32(4, "header length")? as u64;
        let type_off = r.u32(8, "type section offset")? as u64;
        let type_len = r.u32(12, "type section length")? as u64;
        let str_off = r.u32(16, "string section offset")? as u64;
        let str_len = r.u32(20, "string section length")? as u64;
        let len = data.len() as u64;
        let range = |off: u64, n: u64, what: &'static str| {
            let start = hdr_len + off;
            let end = start + n;
            if hdr_len < HEADER_LEN as u64 || end > len {
                Err(BtfError::OutOfBounds {
                    offset: start,
                    what,
                    end,
                    len,
                })
            } else {
                Ok((start as usize, end as usize))
            }
        };
        let (ts, te) = range(type_off, type_len, "type section")?;
        let (ss, se) = range(str_off, str_len, "string section")?;
        let strings = &data[ss..se];
        let types_data = &data[ts..te];
        let tr = Reader { data: types_data };

        let mut raw = Vec::new();
        let mut pos = 0usize;
        while pos < types_data.len() {
            let id = raw.len() as u32 + 1;
            let at = (ts + pos) as u64;
            let name_off = tr.u32(pos, "type")?;
            let info = tr.u32(pos + 4, "type")?;
            let size_or_type = tr.u32(pos + 8, "type")?;
            let vlen = (info & 0xffff) as usize;
            let kind_no = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 != 0;
            let mut p = pos + TYPE_LEN;
            let name = string(strings, name_off).ok_or(BtfError::BadString {
                offset: at,
                id,
                name_off,
            })?;
            let member_name = |off: u32| {
                string(strings, off).ok_or(BtfError::BadString {
                    offset: at,
                    id,
                    name_off: off,
                })
            };
            let kind = match kind_no {
                1 => {
                    tr.u32(p, "int encoding")?;
                    p += 4;
                    TypeKind::Int { size: size_or_type }
                }
                2 => TypeKind::Ptr {
                    target: size_or_type,
                },
                3 => {
                    let k = TypeKind::Array {
                        elem: tr.u32(p, "array")?,
                        index: tr.u32(p + 4, "array")?,
                        nelems: tr.u32(p + 8, "array")?,
                    };
                    p += 12;
                    k
                }
                4 | 5 => {
                    let mut members = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let off = tr.u32(p + 8, "member")?;
                        members.push(Member {
                            name: member_name(tr.u32(p, "member")?)?,
                            type_id: tr.u32(p + 4, "member")?,
                            bit_offset: if kind_flag { off & 0xff_ffff } else { off },
                        });
                        p += 12;
                    }
                    if kind_no == 4 {
                        TypeKind::Struct {
                            size: size_or_type,
                            members,
                        }
                    } else {
                        TypeKind::Union {
                            size: size_or_type,
                            members,
                        }
                    }
                }
                6 => {
                    p = checked_skip(&tr, p, vlen, 8, "enum value")?;
                    TypeKind::Enum { size: size_or_type }
                }
                7 => TypeKind::Fwd,
                8 => TypeKind::Typedef {
                    target: size_or_type,
                },
                9 => TypeKind::Volatile {
                    target: size_or_type,
                },
                10 => TypeKind::Const {
                    target: size_or_type,
                },
                11 => TypeKind::Restrict {
                    target: size_or_type,
                },
                12 => TypeKind::Func {
                    proto: size_or_type,
                },
                13 => {
                    let mut params = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        member_name(tr.u32(p, "parameter")?)?;
                        params.push(tr.u32(p + 4, "parameter")?);
                        p += 8;
                    }
                    TypeKind::FuncProto {
                        ret: size_or_type,
                        params,
                    }
                }
                14 => {
                    let linkage = tr.u32(p, "var")?;
                    p += 4;
                    TypeKind::Var {
                        target: size_or_type,
                        linkage,
                    }
                }
                15 => {
                    let mut vars = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        vars.push(VarSecinfo {
                            type_id: tr.u32(p, "datasec variable")?,
                            offset: tr.u32(p + 4, "datasec variable")?,
                            size: tr.u32(p + 8, "datasec variable")?,
                        });
                        p += 12;
                    }
                    TypeKind::Datasec {
                        size: size_or_type,
                        vars,
                    }
                }
                16 => TypeKind::Float { size: size_or_type },
                17 => {
                    tr.u32(p, "decl_tag")?;
                    p += 4;
                    TypeKind::DeclTag {
                        target: size_or_type,
                    }
                }
                18 => TypeKind::TypeTag {
                    target: size_or_type,
                },
                19 => {
                    p = checked_skip(&tr, p, vlen, 12, "enum64 value")?;
                    TypeKind::Enum64 { size: size_or_type }
                }
                k => {
                    return Err(BtfError::UnknownKind {
                        offset: at,
                        id,
                        kind: k,
                    })
                }
            };
            raw.push(Type {
                name,
                kind,
                offset: at,
            });
            pos = p;
        }

        let btf = Btf { types: raw };
        btf.check()?;
        Ok(btf)
    }

    /// Every reference is a valid id, and no chain of aliases or array
    /// elements loops.
    fn check(&self) -> Result<(), BtfError> {
        let count = self.types.len() as u32;
        for (i, t) in self.types.iter().enumerate() {
            let id = i as u32 + 1;
            for target in t.kind.references() {
                if target > count {
                    return Err(BtfError::BadTypeId {
                        offset: t.offset,
                        id,
                        target,
                        count,
                    });
                }
            }
        }
        for id in 1..=count {
            let mut cur = id;
            let mut hops = 0;
            while let Some(next) = self.get(cur).and_then(|t| match t.kind {
                TypeKind::Array { elem, .. } => Some(elem),
                TypeKind::Var { target, .. } => Some(target),
                ref k => k.alias_of(),
            }) {
                hops += 1;
                if hops > MAX_CHAIN || next == id {
                    return Err(BtfError::Loop {
                        offset: self.offset_of(id),
                        id,
                    });
                }
                cur = next;
            }
        }
        Ok(())
    }

    /// Number of types (not counting `void`).
    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The type with id `id` (`None` for 0, `void`, and unknown ids).
    pub fn get(&self, id: u32) -> Option<&Type> {
        self.types.get((id as usize).checked_sub(1)?)
    }

    fn offset_of(&self, id: u32) -> u64 {
        self.get(id).map_or(0, |t| t.offset)
    }

    /// Follows typedefs and modifiers to the type they stand for.
    pub fn skip_aliases(&self, id: u32) -> Result<u32, BtfError> {
        let mut cur = id;
        for _ in 0..=MAX_CHAIN {
            match self.get(cur).and_then(|t| t.kind.alias_of()) {
                Some(next) => cur = next,
                None => return Ok(cur),
            }
        }
        Err(BtfError::Loop {
            offset: self.offset_of(id),
            id,
        })
    }

    /// The size in bytes of a type.
    pub fn size_of(&self, id: u32) -> Result<u64, BtfError> {
        self.size_of_depth(id, 0)
    }

    fn size_of_depth(&self, id: u32, depth: usize) -> Result<u64, BtfError> {
        if depth > MAX_CHAIN {
            return Err(BtfError::Loop {
                offset: self.offset_of(id),
                id,
            });
        }
        let id = self.skip_aliases(id)?;
        let Some(t) = self.get(id) else {
            return Err(BtfError::NoSize {
                offset: 0,
                id,
                kind: "void",
            });
        };
        Ok(match &t.kind {
            TypeKind::Int { size }
            | TypeKind::Struct { size, .. }
            | TypeKind::Union { size, .. }
            | TypeKind::Enum { size }
            | TypeKind::Enum64 { size }
            | TypeKind::Float { size } => *size as u64,
            TypeKind::Ptr { .. } => 8,
            TypeKind::Array { elem, nelems, .. } => self
                .size_of_depth(*elem, depth + 1)?
                .checked_mul(*nelems as u64)
                .ok_or(BtfError::SizeOverflow {
                    offset: t.offset,
                    id,
                })?,
            TypeKind::Var { target, .. } => self.size_of_depth(*target, depth + 1)?,
            k => {
                return Err(BtfError::NoSize {
                    offset: t.offset,
                    id,
                    kind: k.name(),
                })
            }
        })
    }

    /// The id of the data section named `name`.
    pub fn datasec(&self, name: &str) -> Option<(u32, &Type)> {
        self.types
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == name && matches!(t.kind, TypeKind::Datasec { .. }))
            .map(|(i, t)| (i as u32 + 1, t))
    }
}

/// Skips `n` entries of `each` bytes after checking they are in bounds.
fn checked_skip(
    r: &Reader,
    p: usize,
    n: usize,
    each: usize,
    what: &'static str,
) -> Result<usize, BtfError> {
    let end = p + n * each;
    if n > 0 {
        r.u32(end - 4, what)?;
    }
    Ok(end)
}

/// The NUL-terminated string at `off`, if it is inside the table.
fn string(strings: &[u8], off: u32) -> Option<String> {
    let rest = strings.get(off as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Builds BTF blobs for tests.
#[cfg(test)]
pub(crate) mod build {
    /// Encodes a header, types (already encoded) and strings.
    pub fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0xeb9fu16.to_le_bytes());
        v.push(1);
        v.push(0);
        for x in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(types);
        v.extend_from_slice(strings);
        v
    }

    /// One `struct btf_type` plus extra words.
    pub fn ty(name_off: u32, kind: u32, vlen: u32, size_or_type: u32, extra: &[u32]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [name_off, (kind << 24) | vlen, size_or_type] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        for x in extra {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    const STRS: &[u8] = b"\0int\0s\0a\0";

    #[test]
    fn parses_int_ptr_array_struct() {
        let mut t = ty(1, 1, 0, 4, &[32]); // 1: int
        t.extend(ty(0, 2, 0, 1, &[])); // 2: int *
        t.extend(ty(0, 3, 0, 0, &[1, 1, 10])); // 3: int[10]
        t.extend(ty(5, 4, 2, 48, &[7, 2, 0, 7, 3, 64])); // 4: struct s { int *a; int a[10]; }
        t.extend(ty(0, 10, 0, 4, &[])); // 5: const struct s
        let btf = Btf::parse(&blob(&t, STRS)).unwrap();
        assert_eq!(btf.len(), 5);
        assert_eq!(btf.size_of(3).unwrap(), 40);
        assert_eq!(btf.size_of(5).unwrap(), 48);
        assert_eq!(btf.skip_aliases(5).unwrap(), 4);
        assert_eq!(btf.get(4).unwrap().name, "s");
        assert!(btf.size_of(0).is_err(), "void has no size");
    }

    #[test]
    fn bad_type_id_is_an_error() {
        let t = ty(0, 2, 0, 9, &[]); // ptr to type 9 of 1
        let e = Btf::parse(&blob(&t, STRS)).unwrap_err();
        assert!(
            matches!(
                e,
                BtfError::BadTypeId {
                    id: 1,
                    target: 9,
                    count: 1,
                    offset: 24
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn loops_are_errors() {
        // 1: typedef -> 2, 2: const -> 1
        let mut t = ty(0, 8, 0, 2, &[]);
        t.extend(ty(0, 10, 0, 1, &[]));
        let e = Btf::parse(&blob(&t, STRS)).unwrap_err();
        assert!(matches!(e, BtfError::Loop { id: 1, .. }), "{e}");
        // An array of itself.
        let t = ty(0, 3, 0, 0, &[1, 1, 4]);
        let e = Btf::parse(&blob(&t, STRS)).unwrap_err();
        assert!(matches!(e, BtfError::Loop { id: 1, .. }), "{e}");
        // A pointer cycle through a struct is fine.
        let mut t = ty(5, 4, 1, 8, &[7, 2, 0]); // struct s { s *a; }
        t.extend(ty(0, 2, 0, 1, &[]));
        assert!(Btf::parse(&blob(&t, STRS)).is_ok());
    }

    #[test]
    fn truncations_and_bad_strings_are_errors() {
        let mut t = ty(1, 1, 0, 4, &[32]);
        t.extend(ty(3, 4, 1, 4, &[7, 1, 0]));
        let good = blob(&t, STRS);
        assert!(Btf::parse(&good).is_ok());
        for len in 0..good.len() {
            assert!(Btf::parse(&good[..len]).is_err(), "{len}");
        }
        let t = ty(99, 1, 0, 4, &[32]);
        assert!(matches!(
            Btf::parse(&blob(&t, STRS)),
            Err(BtfError::BadString { name_off: 99, .. })
        ));
        let t = ty(0, 25, 0, 0, &[]);
        assert!(matches!(
            Btf::parse(&blob(&t, STRS)),
            Err(BtfError::UnknownKind { kind: 25, .. })
        ));
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(matches!(Btf::parse(&bad), Err(BtfError::BadMagic { .. })));
    }

    #[test]
    fn array_size_overflow_is_an_error() {
        let mut t = ty(1, 1, 0, 8, &[64]);
        t.extend(ty(0, 3, 0, 0, &[1, 1, u32::MAX]));
        t.extend(ty(0, 3, 0, 0, &[2, 1, u32::MAX]));
        let btf = Btf::parse(&blob(&t, STRS)).unwrap();
        assert!(matches!(btf.size_of(3), Err(BtfError::SizeOverflow { .. })));
    }
}
