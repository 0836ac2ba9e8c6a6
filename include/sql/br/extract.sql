SELECT cnpj, razao_social, nome_fantasia, uf, capital_social, situacao, data_atualizacao
FROM empresas
WHERE data_atualizacao >= :data_interval_start
  AND data_atualizacao < :data_interval_end
