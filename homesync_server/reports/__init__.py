"""Admin reports: pure computation of the fleet's rows, summary, statuses, activity and
storage growth (fleet, status, activity, growth, model), and one renderer module per
output format (table, json, csv, html with svg charts).
"""
