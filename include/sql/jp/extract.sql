SELECT houjin_bangou, shougou, shozaichi, shihonkin, juugyouin, touroku
FROM kigyou
WHERE touroku >= :data_interval_start AND touroku < :data_interval_end
ORDER BY seq
