-- wrk script: lock cycles against a Locklock server on /v1/api.
--   wrk -t2 -c64 -d10s --latency -s scripts/wrk/cycle.lua http://127.0.0.1:8080
-- Each connection POSTs a fresh UUID lock; a DELETE of it is sent only after
-- the 201 came back (its name is read from the answer), so releases never
-- overtake their acquires. A cycle is a 201 and a 200; anything else counts
-- as non-2xx.
local threads = {}

function setup(thread)
	thread:set("prefix", string.format("%08x-%04x-4%03x-8%03x-",
		math.random(0, 0x7fffffff), math.random(0, 0xffff), math.random(0, 0xfff), math.random(0, 0xfff)))
	table.insert(threads, thread)
end

local counter = 0
local pending = {} -- names acquired, to release
released = 0

function request()
	local name = table.remove(pending)
	if name then
		return wrk.format("DELETE", "/v1/api/lock/uuid/" .. name)
	end
	counter = counter + 1
	return wrk.format("POST", "/v1/api/lock/uuid/" .. prefix .. string.format("%012x", counter))
end

function response(status, headers, body)
	if status == 201 then
		local name = body:match('"name":"([^"]+)"')
		if name then
			table.insert(pending, name)
		end
	elseif status == 200 then
		released = released + 1
	end
end

function done(summary, latency, requests)
	local cycles = 0
	for _, t in ipairs(threads) do
		cycles = cycles + t:get("released")
	end
	io.write(string.format("cycles: %d\ncycles/s: %.1f\n", cycles, cycles / (summary.duration / 1e6)))
end
