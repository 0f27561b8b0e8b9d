-- wrk script: POSTs a different nested-shape Netdata alert on every request.
--
--   wrk -s bench/post_unique.lua https://127.0.0.1:PORT/ -- <bearer token> [run tag]
--
-- Every body has its own alert.transition_id (run tag, thread id, per-thread counter and a
-- random number), so the receiver stores each one instead of folding it into a duplicate.
-- Host, alert name, status and value vary too, so the active set changes as a real one does.
-- The shape follows tests/fixtures/captured/netdata-alert-critical.json.
--
-- With an empty token no Authorization header is sent (the bare baseline ignores it anyway).
-- done() prints "generated <n> requests": how many bodies were handed to wrk for sending.
-- wrk stops mid-flight, so the receiver may store up to one request per connection more
-- than wrk counts as completed, never fewer.

local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   -- set() writes a global of the thread's own Lua state: `tid` below.
   thread:set("tid", thread_count)
   table.insert(threads, thread)
end

local token = ""
local tag = "run"
local headers = {}
local counter = 0
-- Globals, so that setup() can set `tid` and done() can read `sent` through thread:get.
tid = 0
sent = 0

local hosts = {}
for i = 1, 50 do
   hosts[i] = string.format("node%02d.bench.example.net", i)
end
local node_ids = {}
for i = 1, 50 do
   node_ids[i] = string.format("e84d4453-cb1f-48b5-abfd-%012x", i)
end
local alerts = {
   { "used_swap", "mem.swap", "mem.swap", "Swap memory utilization", "System swap memory utilization", "Utilization" },
   { "ram_in_use", "system.ram", "system.ram", "System memory utilization", "System memory is in use", "Utilization" },
   { "10min_cpu_usage", "system.cpu", "system.cpu", "Average CPU utilization", "Average CPU utilization over 10 minutes", "Utilization" },
   { "disk_space_usage", "disk_space._", "disk.space", "Disk space utilization", "Disk / space utilization", "Utilization" },
   { "out_of_disk_space_time", "disk_space._", "disk.space", "Estimated time to run out of disk space", "Disk / runs out of space soon", "Utilization" },
   { "1m_tcp_syn_queue_drops", "ip.tcp_syn_queue", "ip.tcp_syn_queue", "TCP SYN queue drops", "TCP SYN queue drops over the last minute", "Workload" },
}
local statuses = { "Critical", "Warning", "Clear" }
local messages = { Critical = "Raised to Critical", Warning = "Raised to Warning", Clear = "Recovered" }

function init(args)
   token = args[1] or ""
   tag = args[2] or tostring(os.time())
   math.randomseed(os.time() * 1000 + tid * 7919)
   headers = { ["Content-Type"] = "application/json" }
   if token ~= "" then
      headers["Authorization"] = "Bearer " .. token
   end
end

local function body()
   counter = counter + 1
   local n = math.random(1, #hosts)
   local a = alerts[math.random(1, #alerts)]
   local status = statuses[math.random(1, #statuses)]
   local prev = statuses[math.random(1, #statuses)]
   local value = math.random() * 100
   local transition = string.format("%s-%02d-%010d-%08x", tag, tid, counter, math.random(0, 0x7fffffff))
   local url = string.format(
      "https://app.netdata.cloud/spaces/bench/rooms/all-nodes/alerts/%s.%s:::%s?chart=%s&alarm=%s&transition=%s",
      a[3], a[1], node_ids[n], a[2], a[1], transition)
   return string.format([[{
  "message": "%s, %s = %.0f%%, on %s",
  "space": {"id": "399a3ded-8276-429e-9c24-1e69f06efdd8", "name": "Bench", "slug": "bench"},
  "node": {
    "id": "%s",
    "hostname": "%s",
    "rooms": [{"id": "13662d82-19a5-401a-834d-e32b42a116c3", "name": "All nodes", "slug": "all-nodes",
               "url": "https://app.netdata.cloud/spaces/bench/rooms/all-nodes"}]
  },
  "alert": {
    "name": "%s",
    "chart": {"id": "%s", "name": "%s"},
    "context": "%s",
    "state": {"status": "%s", "value": %.6f, "value_str": "%.0f%%"},
    "prev_state": {"status": "%s", "value": 0, "value_str": "0%%"},
    "triggered_at": "2026-04-10T22:%02d:%02d-05:00",
    "transition_id": "%s",
    "duration": {"value": %d, "value_str": "%d seconds", "non_clear": 0},
    "location": {"timezone": "CDT", "utc_offset": -18000},
    "config": {"hash": "bde2cfa3-dbaa-42c4-bba2-5fd798142f2a", "classification": "%s", "recipient": "sysadmin",
               "command": "sudo /etc/netdata/edit-config health.d/bench.conf", "line": 20,
               "centralisation_point": {"hostname": "netdata.service.bench.example.net"}},
    "rendered": {"info": "%s", "summary": "%s"},
    "log": {"total": {"critical": %d, "warning": %d},
            "entries": [{"name": "ram_available", "status": "Warning", "triggered_at": "2026-04-10T22:11:28-05:00"}]},
    "url": "%s"
  }
}]],
      messages[status], a[5], value, hosts[n],
      node_ids[n], hosts[n],
      a[1], a[2], a[2], a[3],
      status, value, value,
      prev,
      math.random(0, 59), math.random(0, 59),
      transition,
      counter, counter, a[6],
      a[4], a[5],
      math.random(0, 3), math.random(0, 3),
      url)
end

function request()
   sent = sent + 1
   return wrk.format("POST", nil, headers, body())
end

function done(summary, latency, requests)
   local total = 0
   for _, t in ipairs(threads) do
      total = total + (t:get("sent") or 0)
   end
   io.write(string.format("generated %d requests\n", total))
end
