//! One declaration per wire registry (a one-byte code with a fixed set of
//! defined values), so that the enum, its conversions, its names and its
//! list of values can never drift apart.
//!
//! [`wire_registry!`] is used for [`PacketType`](super::PacketType),
//! [`FrameType`](super::FrameType) and [`CallKind`](crate::ids::CallKind).
//! Each row `Variant = 0x.. => "NAME"` yields the enum variant with that
//! discriminant, its arm in `from_u8` / `TryFrom<u8>` and its `Display`
//! name, and its place in `ALL`. Code that dispatches on a registry
//! converts the byte once with `TryFrom` and matches the enum exhaustively,
//! so a new row fails to compile until every dispatch site handles it.
//!
//! The generated code is what one would write by hand (a `#[repr(u8)]`
//! enum, `as u8` and a `match` on literals), so it costs nothing at run time.

/// Declares a one-byte wire registry.
///
/// ```ignore
/// wire_registry! {
///     /// Doc of the enum.
///     pub enum Colour: u8, unknown = WireError::UnknownColour {
///         /// Doc of the variant.
///         Red = 0x01 => "RED",
///     }
/// }
/// ```
///
/// Generates the enum (`Debug, Clone, Copy, PartialEq, Eq, Hash`,
/// `#[repr(u8)]`), `Colour::ALL` (every value in declaration order),
/// `const fn from_u8(u8) -> Option<Colour>`, `const fn name(self)`,
/// `TryFrom<u8>` failing with `unknown(byte)` (a [`WireError`](super::WireError)
/// variant carrying the offending byte), `From<Colour> for u8` and `Display`
/// (the name). Rows must be in ascending value order (checked at compile
/// time, as is a duplicate value: a duplicate discriminant).
macro_rules! wire_registry {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : u8, unknown = $unknown:path {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $value:literal => $label:literal,
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant = $value,
            )+
        }

        impl $name {
            /// Every defined value, in ascending wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value with wire byte `v`, if defined.
            #[inline]
            pub const fn from_u8(v: u8) -> Option<$name> {
                match v {
                    $($value => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The name the protocol specification (`docs/PROTOCOL.md`) uses.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }
        }

        // `ALL` is strictly ascending, as the docs of `ALL` promise.
        const _: () = {
            let all = $name::ALL;
            let mut i = 1;
            while i < all.len() {
                assert!((all[i - 1] as u8) < (all[i] as u8), "registry rows out of order");
                i += 1;
            }
        };

        impl TryFrom<u8> for $name {
            type Error = $crate::wire::WireError;

            #[inline]
            fn try_from(v: u8) -> Result<Self, $crate::wire::WireError> {
                match Self::from_u8(v) {
                    Some(t) => Ok(t),
                    None => Err($unknown(v)),
                }
            }
        }

        impl From<$name> for u8 {
            #[inline]
            fn from(v: $name) -> u8 {
                v as u8
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(crate) use wire_registry;
