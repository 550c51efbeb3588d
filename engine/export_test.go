package engine

// GroupByAccount exposes groupByAccount to the external tests.
var GroupByAccount = groupByAccount
