"""The web console at `/ui/`: the NOC's view of incidents, tickets, silences, heartbeats and
alertd's own health, served by the daemon itself (server-rendered HTML, one small script).

    console   app state, who is looking, rendering, security headers, the action guard
    session   sign-in sessions and the token check the console shares with the API
    board     the board's filters, grouping, order and paging (pure)
    health    the health strip
    views     the pages (GET)
    actions   what people do (POST): through the same engine inputs as the JSON API
    fmt       times and durations as a wallboard shows them

Routes are in the one route table, `alertd.app.add_routes`.
"""
