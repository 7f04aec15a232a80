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
//! let call = client.create_call(CreateCallRequest::default()).await?.into_inner();
//! println!("call {}", call.call_id);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

/// The `shopcall.v1` package: messages, the `CallService` and `NodeService` servers and
/// clients.
pub mod v1 {
    #![allow(missing_docs)]
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("shopcall.v1");
}

/// The encoded `FileDescriptorSet` of `shopcall.v1` (and the well-known types it imports),
/// for `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("shopcall_v1_descriptor");

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use prost::Message;
    use prost_types::FileDescriptorProto;

    /// The `shopcall.v1` file in the descriptor set.
    fn api_file() -> FileDescriptorProto {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        set.file
            .into_iter()
            .find(|f| f.package() == "shopcall.v1")
            .expect("the set holds shopcall.v1")
    }

    #[test]
    fn the_call_service_has_every_rpc() {
        let file = api_file();
        let services: Vec<&str> = file.service.iter().map(|s| s.name()).collect();
        assert_eq!(services, ["CallService", "NodeService"]);
        let service = &file.service[0];
        let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(
            methods,
            [
                "CreateCall",
                "Join",
                "Answer",
                "Decline",
                "SetCamera",
                "RequestCamera",
                "RestartIce",
                "AddIceCandidate",
                "Leave",
                "EndCall",
                "GetCall",
                "ListCalls",
                "WatchEvents",
                "GiveConsent",
                "StartRecording",
                "StopRecording"
            ]
        );
        for method in &service.method {
            let streaming = method.name() == "WatchEvents";
            assert_eq!(method.server_streaming(), streaming, "{}", method.name());
            assert!(!method.client_streaming(), "{}", method.name());
        }
    }

    #[test]
    fn the_node_service_has_drain_and_node_stats() {
        let file = api_file();
        let service = file
            .service
            .iter()
            .find(|s| s.name() == "NodeService")
            .expect("NodeService is defined");
        let methods: Vec<(&str, bool)> = service
            .method
            .iter()
            .map(|m| (m.name(), m.server_streaming()))
            .collect();
        assert_eq!(methods, [("Drain", true), ("NodeStats", false)]);
    }

    #[test]
    fn every_enum_starts_with_unspecified_zero() {
        for e in api_file().enum_type {
            let first = &e.value[0];
            assert_eq!(first.number(), 0, "{}", e.name());
            assert!(
                first.name().ends_with("_UNSPECIFIED"),
                "{}: {}",
                e.name(),
                first.name()
            );
        }
    }

    /// Paths (as in `SourceCodeInfo`) of everything that must carry a comment: the service,
    /// its methods, messages, their fields and oneofs, enums and their values.
    fn documentable(file: &FileDescriptorProto) -> Vec<(Vec<i32>, String)> {
        let mut paths = Vec::new();
        for (i, m) in file.message_type.iter().enumerate() {
            let i = i as i32;
            paths.push((vec![4, i], m.name().to_owned()));
            for (j, f) in m.field.iter().enumerate() {
                paths.push((
                    vec![4, i, 2, j as i32],
                    format!("{}.{}", m.name(), f.name()),
                ));
            }
            for (j, o) in m.oneof_decl.iter().enumerate() {
                // `optional` fields get a synthetic oneof that has no source of its own.
                let synthetic = m
                    .field
                    .iter()
                    .any(|f| f.proto3_optional() && f.oneof_index == Some(j as i32));
                if !synthetic {
                    paths.push((
                        vec![4, i, 8, j as i32],
                        format!("{}.{}", m.name(), o.name()),
                    ));
                }
            }
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            let i = i as i32;
            paths.push((vec![5, i], e.name().to_owned()));
            for (j, v) in e.value.iter().enumerate() {
                paths.push((vec![5, i, 2, j as i32], v.name().to_owned()));
            }
        }
        for (i, s) in file.service.iter().enumerate() {
            let i = i as i32;
            paths.push((vec![6, i], s.name().to_owned()));
            for (j, m) in s.method.iter().enumerate() {
                paths.push((
                    vec![6, i, 2, j as i32],
                    format!("{}.{}", s.name(), m.name()),
                ));
            }
        }
        paths
    }

    #[test]
    fn every_item_of_the_api_is_documented() {
        let file = api_file();
        let info = file
            .source_code_info
            .as_ref()
            .expect("the descriptor set keeps source info (comments) for reflection");
        let commented: HashSet<&[i32]> = info
            .location
            .iter()
            .filter(|l| !l.leading_comments().trim().is_empty())
            .map(|l| l.path.as_slice())
            .collect();
        let missing: Vec<String> = documentable(&file)
            .into_iter()
            .filter(|(path, _)| !commented.contains(path.as_slice()))
            .map(|(_, name)| name)
            .collect();
        assert!(missing.is_empty(), "undocumented: {missing:?}");
    }
}
