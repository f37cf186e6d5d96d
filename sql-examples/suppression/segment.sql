-- Suppression: sign-ups of the last 7 days who are not recent buyers (recent_buyers is
-- the segment of ../recent_buyers/segment.sql): a welcome offer never goes to someone
-- who has just paid.
CREATE SEGMENT welcome_offer AS
SELECT user_id FROM profiles WHERE signup_at > NOW() - INTERVAL '7 days'
EXCEPT
SELECT user_id FROM recent_buyers;
