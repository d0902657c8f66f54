//! Images: content-addressed blobs, manifests and configs, and layers unpacked into
//! snapshot directories that overlayfs stacks for containers.

pub mod digest;
pub mod reference;
pub mod store;
pub mod unpack;
