//! An object read by the Json ItemReader from a local bucket: items or a failure,
//! never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common/items.rs"]
mod items;

fuzz_target!(|data: &[u8]| items::read_object(data, shoal_asl::InputType::Json));
