-- Companies changed in the run's data interval. :data_interval_start / :data_interval_end are bound
-- by the runtime (UTC, 'YYYY-MM-DD HH:MM:SS'); the interval is half-open: [start, end).
SELECT firmen_id, firmenname, rechtsform, branche, stadt, stammkapital, gegruendet, aktualisiert
FROM unternehmen
WHERE aktualisiert >= :data_interval_start
  AND aktualisiert < :data_interval_end
