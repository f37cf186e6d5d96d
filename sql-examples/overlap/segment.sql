-- Overlap of two segments: users who are both hot on pricing and recent buyers right now
-- (both segments are defined in their own folders).
CREATE SEGMENT hot_and_buying AS
SELECT user_id FROM pricing_hot
INTERSECT
SELECT user_id FROM recent_buyers;
