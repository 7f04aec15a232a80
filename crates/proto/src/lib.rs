//! shopcall's gRPC API, `shopcall.v1`, generated from `proto/shopcall/v1/shopcall.proto`.
//!
//! * [`v1`] holds the messages, the server trait and service
//!   ([`v1::call_service_server::CallService`], [`v1::call_service_server::CallServiceServer`])
//!   and the client ([`v1::call_service_client::CallServiceClient`]).
//! * [`FILE_DESCRIPTOR_SET`] is the encoded descriptor set of the API, for server reflection
//!   (`tonic-reflection`).
//!
//! The `.proto` file is the reference: every message, field and enum value is documented there,
//! and the same comments appear on the generated items.
//!
//! ```no_run
//! use shopcall_proto::v1::{call_service_client::CallServiceClient, CreateCallRequest};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = CallServiceClient::connect("http://127.0.0.1:50051").await?;
//! let call = client.create_call(CreateCallRequest {}).await?.into_inner();
//! println!("call {}", call.call_id);
//! # Ok(())
//! # }
//! ```

/// The `shopcall.v1` package: messages, the `CallService` server and client.
pub mod v1 {
    #![allow(missing_docs)]
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("shopcall.v1");
}

/// The encoded `FileDescriptorSet` of `shopcall.v1` (and the well-known types it imports),
/// for `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("shopcall_v1_descriptor");
