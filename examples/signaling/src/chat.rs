//! The chat: one merchant and one customer, and at most one call between them at a time.
//!
//! Every button on the pages ends up here as one or two gRPC calls to shopcalld, in the order
//! `docs/integration.md` describes:
//!
//! | page action | gRPC |
//! |---|---|
//! | merchant: "Send video invitation" | CreateCall, WatchEvents (this call), Join (merchant) |
//! | customer: "Join" on the card | Join (customer, declared tracks) |
//! | customer: "Decline" | Decline |
//! | customer: "Show the product" / "Stop showing" | SetCamera (customer, rear lens) |
//! | merchant: "Ask to show the product" | RequestCamera |
//! | either: "Hang up" | Leave (or EndCall before the merchant joined) |
//! | either: network changed | RestartIce |
//!
//! shopcalld's events for the call come back on one WatchEvents stream per call, are turned
//! into page events (`page_event.rs`) and fanned out to the pages' server-sent-event streams.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use shopcall_proto::v1 as pb;
use shopcall_proto::v1::call_service_client::CallServiceClient;
use tokio::sync::broadcast;
use tonic::transport::Channel;

use crate::page_event::{Audience, Outgoing, PageEvent, Role, Translator};

/// The merchant's and the customer's ids on the platform, echoed in the call record.
pub const MERCHANT_REF: &str = "shop-7";
/// See [`MERCHANT_REF`].
pub const CUSTOMER_REF: &str = "buyer-9";

/// Page events waiting for slow pages before they miss some.
const PAGE_EVENT_BUFFER: usize = 256;

/// Why a page's request failed.
#[derive(Debug)]
pub enum ChatError {
    /// shopcalld refused or failed; its status says why (PERMISSION_DENIED for a policy
    /// refusal, FAILED_PRECONDITION for a call that ended, ...).
    Grpc(tonic::Status),
    /// The request does not fit the chat's state (no call, a call already running, ...).
    Conflict(&'static str),
    /// The request itself is malformed.
    BadRequest(String),
}

impl From<tonic::Status> for ChatError {
    fn from(s: tonic::Status) -> Self {
        ChatError::Grpc(s)
    }
}

/// A track the page declares in its offer: the m-line's mid and what it carries.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DeclaredTrack {
    /// `a=mid` of the m-line (the transceiver's `mid` after `setLocalDescription`).
    pub mid: String,
    /// `microphone`, `camera_rear`, `camera_front` or `screen`.
    pub source: String,
}

/// What a page gets back from joining: the SDP answer and what it must apply.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    /// The call.
    pub call_id: String,
    /// shopcalld's SDP answer, for `setRemoteDescription`.
    pub answer: String,
    /// The verdict on each declared track.
    pub tracks: Vec<TrackVerdict>,
    /// What the client must apply (the customer: rear camera, off at join).
    pub constraints: Constraints,
}

/// shopcalld's verdict on one m-line.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackVerdict {
    /// The m-line.
    pub mid: String,
    /// Accepted (its media may flow once granted) or refused (answered inactive).
    pub accepted: bool,
    /// Why refused, for people.
    pub refusal_reason: String,
}

/// The media constraints for the page's user, from the Join answer.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Constraints {
    /// May publish the microphone.
    pub microphone: bool,
    /// The camera rules; `None`: no camera in this call.
    pub camera: Option<Camera>,
}

/// The camera part of [`Constraints`].
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Camera {
    /// The W3C `facingMode` to request (`environment` for the customer's rear lens); empty
    /// when the user chooses.
    pub facing_mode: String,
    /// Whether the camera is on at join.
    pub on_at_join: bool,
    /// Whether the user may turn it on later.
    pub may_turn_on: bool,
    /// Capture caps.
    pub max_width: u32,
    /// Capture caps.
    pub max_height: u32,
    /// Capture caps.
    pub max_frame_rate: u32,
}

/// The call in progress.
#[derive(Debug, Clone)]
struct Current {
    call_id: String,
    /// Participant ids, once each side joined.
    merchant: Option<String>,
    customer: Option<String>,
    /// Until the customer answers.
    ringing: bool,
}

impl Current {
    fn participant(&self, role: Role) -> Option<&String> {
        match role {
            Role::Merchant => self.merchant.as_ref(),
            Role::Customer => self.customer.as_ref(),
        }
    }
}

/// The conversation between the merchant and the customer.
pub struct Chat {
    calls: CallServiceClient<Channel>,
    ring_timeout: Option<Duration>,
    current: Mutex<Option<Current>>,
    /// Serialises invitations, so two clicks make one call.
    inviting: tokio::sync::Mutex<()>,
    events: broadcast::Sender<Outgoing>,
}

impl Chat {
    /// A chat that drives shopcalld through `calls`.
    pub fn new(calls: CallServiceClient<Channel>, ring_timeout: Option<Duration>) -> Chat {
        Chat {
            calls,
            ring_timeout,
            current: Mutex::new(None),
            inviting: tokio::sync::Mutex::new(()),
            events: broadcast::channel(PAGE_EVENT_BUFFER).0,
        }
    }

    /// Page events from now on (each page filters by its role).
    pub fn subscribe(&self) -> broadcast::Receiver<Outgoing> {
        self.events.subscribe()
    }

    /// What a page that (re)connects should see first: the invitation card, if the call
    /// still rings and the customer has not joined.
    pub fn greeting(&self, role: Role) -> Option<PageEvent> {
        let current = self.current.lock().expect("chat state lock").clone()?;
        (role == Role::Customer && current.ringing && current.customer.is_none()).then_some(
            PageEvent::Invitation {
                call_id: current.call_id,
            },
        )
    }

    fn current(&self) -> Result<Current, ChatError> {
        self.current
            .lock()
            .expect("chat state lock")
            .clone()
            .ok_or(ChatError::Conflict("there is no call in this chat"))
    }

    fn publish(&self, to: Audience, event: PageEvent) {
        // No page listening is fine.
        let _ = self.events.send(Outgoing { to, event });
    }

    /// The merchant sends the "video explanation" invitation card: creates the call, watches
    /// it, joins the merchant with its camera on, and puts the card in the customer's chat.
    pub async fn invite(
        self: &Arc<Self>,
        offer: String,
        tracks: Vec<DeclaredTrack>,
    ) -> Result<Joined, ChatError> {
        let _one_at_a_time = self.inviting.lock().await;
        if self.current.lock().expect("chat state lock").is_some() {
            return Err(ChatError::Conflict(
                "a call is already in progress in this chat",
            ));
        }
        let tracks = declared(tracks)?;
        let mut calls = self.calls.clone();

        // 1. CreateCall: the platform passes the merchant's standing (the eligibility rules
        //    may make the call audio-only) and its own ids for the record.
        let created = calls
            .create_call(pb::CreateCallRequest {
                initiator: pb::Role::Merchant as i32,
                merchant_ref: MERCHANT_REF.into(),
                customer_ref: CUSTOMER_REF.into(),
                merchant_standing: Some(pb::MerchantStanding {
                    rating: 4.8,
                    reply_rate: 0.97,
                    video_opt_in: true,
                }),
                limits: Some(pb::CallLimits {
                    ring_timeout: self.ring_timeout.map(|d| prost_types::Duration {
                        seconds: d.as_secs() as i64,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        let call_id = created.call_id;

        // 2. WatchEvents for this call before anyone joins, so no event is missed.
        let stream = match calls
            .watch_events(pb::WatchEventsRequest {
                call_id: call_id.clone(),
            })
            .await
        {
            Ok(res) => res.into_inner(),
            Err(status) => {
                end_quietly(&mut calls, &call_id).await;
                return Err(status.into());
            }
        };
        *self.current.lock().expect("chat state lock") = Some(Current {
            call_id: call_id.clone(),
            merchant: None,
            customer: None,
            ringing: true,
        });
        tokio::spawn(self.clone().watch(call_id.clone(), stream));

        // 3. Join the merchant (camera on at join under the default profile).
        let joined = match self.join_as(Role::Merchant, &call_id, offer, tracks).await {
            Ok(j) => j,
            Err(e) => {
                end_quietly(&mut calls, &call_id).await;
                return Err(e);
            }
        };

        // 4. The card in the customer's chat (and "ringing" on the merchant's console).
        self.publish(Audience::Both, PageEvent::Invitation { call_id });
        Ok(joined)
    }

    /// The customer taps "Join" on the card: joins with the microphone on and the camera
    /// off. The offer still has a sendrecv video m-line (declared `camera_rear`), so "Show
    /// the product" later needs no renegotiation.
    pub async fn join(
        &self,
        offer: String,
        tracks: Vec<DeclaredTrack>,
    ) -> Result<Joined, ChatError> {
        let current = self.current()?;
        if current.customer.is_some() {
            return Err(ChatError::Conflict("the customer is already in the call"));
        }
        let tracks = declared(tracks)?;
        self.join_as(Role::Customer, &current.call_id, offer, tracks)
            .await
    }

    async fn join_as(
        &self,
        role: Role,
        call_id: &str,
        offer: String,
        tracks: Vec<pb::DeclaredTrack>,
    ) -> Result<Joined, ChatError> {
        let res = self
            .calls
            .clone()
            .join(pb::JoinRequest {
                call_id: call_id.into(),
                role: role.to_proto() as i32,
                sdp_offer: offer,
                tracks,
            })
            .await?
            .into_inner();
        if let Some(current) = self.current.lock().expect("chat state lock").as_mut()
            && current.call_id == call_id
        {
            match role {
                Role::Merchant => current.merchant = Some(res.participant_id.clone()),
                Role::Customer => {
                    current.customer = Some(res.participant_id.clone());
                    current.ringing = false;
                }
            }
        }
        Ok(Joined {
            call_id: call_id.into(),
            answer: res.sdp_answer,
            tracks: res
                .tracks
                .into_iter()
                .map(|t| TrackVerdict {
                    mid: t.mid,
                    accepted: t.accepted,
                    refusal_reason: t.refusal_reason,
                })
                .collect(),
            constraints: constraints(res.constraints),
        })
    }

    /// The customer declines the invitation.
    pub async fn decline(&self) -> Result<(), ChatError> {
        let current = self.current()?;
        self.calls
            .clone()
            .decline(pb::DeclineRequest {
                call_id: current.call_id,
                role: pb::Role::Customer as i32,
            })
            .await?;
        Ok(())
    }

    /// `role` turns its own camera on or off. The customer's camera is the rear lens: the
    /// page opened it with `facingMode: environment`, as Join's constraints said. The
    /// merchant's is its laptop's (front) camera.
    pub async fn set_camera(&self, role: Role, on: bool) -> Result<(), ChatError> {
        let current = self.current()?;
        let lens = match role {
            Role::Customer => pb::Lens::Rear,
            Role::Merchant => pb::Lens::Front,
        };
        self.calls
            .clone()
            .set_camera(pb::SetCameraRequest {
                call_id: current.call_id,
                actor: role.to_proto() as i32,
                target: role.to_proto() as i32,
                on,
                lens: if on { lens as i32 } else { 0 },
            })
            .await?;
        Ok(())
    }

    /// The merchant asks the customer to show the product. Only a prompt: shopcalld refuses
    /// any attempt by the merchant to turn the customer's camera on.
    pub async fn request_camera(&self) -> Result<(), ChatError> {
        let current = self.current()?;
        self.calls
            .clone()
            .request_camera(pb::RequestCameraRequest {
                call_id: current.call_id,
                actor: pb::Role::Merchant as i32,
                target: pb::Role::Customer as i32,
            })
            .await?;
        Ok(())
    }

    /// `role` hangs up: Leave ends an answered call for both (and cancels a ringing one when
    /// the merchant leaves). Without a participant yet, the merchant's hang-up ends the call.
    pub async fn hang_up(&self, role: Role) -> Result<(), ChatError> {
        let current = self.current()?;
        let mut calls = self.calls.clone();
        match current.participant(role) {
            Some(id) => {
                calls
                    .leave(pb::LeaveRequest {
                        participant_id: id.clone(),
                    })
                    .await?;
            }
            None if role == Role::Merchant => {
                calls
                    .end_call(pb::EndCallRequest {
                        call_id: current.call_id,
                    })
                    .await?;
            }
            None => return Err(ChatError::Conflict("the customer is not in the call")),
        }
        Ok(())
    }

    /// `role`'s network changed: its ICE-restart offer in, shopcalld's answer out.
    pub async fn restart_ice(&self, role: Role, offer: String) -> Result<String, ChatError> {
        let current = self.current()?;
        let id = current
            .participant(role)
            .ok_or(ChatError::Conflict("not in the call"))?;
        let res = self
            .calls
            .clone()
            .restart_ice(pb::RestartIceRequest {
                participant_id: id.clone(),
                sdp_offer: offer,
            })
            .await?
            .into_inner();
        Ok(res.sdp_answer)
    }

    /// Follows one call's events until it ends: each becomes page events; the end frees the
    /// chat for the next invitation.
    async fn watch(
        self: Arc<Self>,
        call_id: String,
        mut stream: tonic::Streaming<pb::WatchEventsResponse>,
    ) {
        let mut translator = Translator::default();
        loop {
            match stream.next().await {
                Some(Ok(pb::WatchEventsResponse { event: Some(event) })) => {
                    let ended = matches!(event.kind, Some(pb::event::Kind::CallEnded(_)));
                    if ended {
                        // Free the chat before the pages hear of the end, so that a new
                        // invitation right after it is accepted.
                        self.ended(&call_id);
                    }
                    for out in translator.translate(&event) {
                        let _ = self.events.send(out);
                    }
                    if ended {
                        tracing::info!(call = %call_id, "call ended");
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(status)) => {
                    tracing::warn!(call = %call_id, %status, "WatchEvents failed");
                    break;
                }
                None => {
                    tracing::warn!(call = %call_id, "WatchEvents ended before the call did");
                    break;
                }
            }
        }
        self.ended(&call_id);
        self.publish(
            Audience::Both,
            PageEvent::Error {
                message: "lost contact with the media server; the call is over".into(),
            },
        );
    }

    fn ended(&self, call_id: &str) {
        let mut current = self.current.lock().expect("chat state lock");
        if current.as_ref().is_some_and(|c| c.call_id == call_id) {
            *current = None;
        }
    }
}

/// Ends a call that could not be set up, so nothing is left ringing.
async fn end_quietly(calls: &mut CallServiceClient<Channel>, call_id: &str) {
    let request = pb::EndCallRequest {
        call_id: call_id.to_owned(),
    };
    if let Err(status) = calls.end_call(request).await {
        tracing::warn!(call = %call_id, %status, "cannot end the call");
    }
}

/// The declared tracks in shopcalld's terms.
fn declared(tracks: Vec<DeclaredTrack>) -> Result<Vec<pb::DeclaredTrack>, ChatError> {
    tracks
        .into_iter()
        .map(|t| {
            let source = match t.source.as_str() {
                "microphone" => pb::Source::Microphone,
                "camera_rear" => pb::Source::CameraRear,
                "camera_front" => pb::Source::CameraFront,
                "screen" => pb::Source::Screen,
                other => {
                    return Err(ChatError::BadRequest(format!(
                        "unknown track source {other:?} (microphone, camera_rear, camera_front, screen)"
                    )));
                }
            };
            Ok(pb::DeclaredTrack {
                mid: t.mid,
                source: source as i32,
            })
        })
        .collect()
}

fn constraints(c: Option<pb::ClientConstraints>) -> Constraints {
    let c = c.unwrap_or_default();
    Constraints {
        microphone: c.microphone,
        camera: c.camera.map(|cam| {
            let caps = cam.caps.unwrap_or_default();
            Camera {
                facing_mode: cam.facing_mode,
                on_at_join: cam.on_at_join,
                may_turn_on: cam.may_turn_on,
                max_width: caps.max_width,
                max_height: caps.max_height,
                max_frame_rate: caps.max_frame_rate,
            }
        }),
    }
}
