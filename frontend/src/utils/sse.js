// A small parser for text/event-stream bodies read from fetch(): the chat posts
// JSON, which EventSource cannot do.

/** Parse one SSE block ("event: x\ndata: {...}") into {event, data}. */
export function parseEventBlock(block) {
  let event = 'message'
  const data = []
  for (const rawLine of block.split('\n')) {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine
    if (!line || line.startsWith(':')) continue
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'event') event = value
    else if (field === 'data') data.push(value)
  }
  if (!data.length) return null
  const text = data.join('\n')
  let parsed = text
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = text
  }
  return { event, data: parsed }
}

/** Split a growing buffer into complete event blocks and the unfinished rest. */
export function splitEvents(buffer) {
  const normalised = buffer.replace(/\r\n/g, '\n')
  const parts = normalised.split('\n\n')
  const rest = parts.pop()
  return { blocks: parts, rest }
}

/** Read an SSE response body, calling onEvent({event, data}) for each event. */
export async function readEventStream(body, onEvent) {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    buffer += decoder.decode(value, { stream: true })
    const { blocks, rest } = splitEvents(buffer)
    buffer = rest
    for (const block of blocks) {
      const parsed = parseEventBlock(block)
      if (parsed) onEvent(parsed)
    }
  }
  buffer += decoder.decode()
  const last = parseEventBlock(buffer.trim())
  if (last) onEvent(last)
}
