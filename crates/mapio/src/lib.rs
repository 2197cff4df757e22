//! A Distributed Map's I/O: the ItemReader, which streams items out of a bucket's
//! objects or listings, and the ResultWriter, which streams child results into
//! `manifest.json` and the SUCCEEDED/FAILED/PENDING part files.

pub mod items;
pub mod results;
