//! Code generated from `proto/` by tonic-prost-build, plus the encoded file descriptor set that
//! the servers register with gRPC reflection so that grpcurl works without the .proto files.

pub mod convert;

pub mod recipe {
    pub mod v1 {
        tonic::include_proto!("recipe.v1");
    }
}

/// Encoded `FileDescriptorSet` of every file in `proto/` and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("recipe_descriptor");
