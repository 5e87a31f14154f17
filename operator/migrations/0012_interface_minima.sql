-- The lowest poll of each interface rollup bucket, in and out, so that a decimated
-- bandwidth series (`points=`) keeps its dips as well as its peaks at any bucket size.
-- Rows folded before this migration have none; readers fall back to the bucket's average.
ALTER TABLE net_if_1m ADD COLUMN in_bps_min double precision, ADD COLUMN out_bps_min double precision;
ALTER TABLE net_if_1h ADD COLUMN in_bps_min double precision, ADD COLUMN out_bps_min double precision;
