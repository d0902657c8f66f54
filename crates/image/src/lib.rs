//! Images: content-addressed blobs, manifests and configs, and layers unpacked into
//! snapshot directories that overlayfs stacks for containers.

pub mod adopt;
pub mod archive;
pub mod digest;
mod gzip;
pub mod images;
pub mod manifest;
pub mod meta;
pub mod pending;
pub mod reference;
pub mod snapshot;
pub mod store;
pub mod time;
pub mod unpack;
pub mod xattr;
