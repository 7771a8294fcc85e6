import { describe, expect, it } from 'vitest'

import { parseEventBlock, readEventStream, splitEvents } from '@/utils/sse'

function streamOf(chunks) {
  const encoder = new TextEncoder()
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk))
      controller.close()
    },
  })
}

describe('parseEventBlock', () => {
  it('reads the event name and parses JSON data', () => {
    expect(parseEventBlock('event: delta\ndata: {"delta": "你好"}')).toEqual({
      event: 'delta',
      data: { delta: '你好' },
    })
  })

  it('defaults the event name to "message" and keeps text data as text', () => {
    expect(parseEventBlock('data: plain text')).toEqual({ event: 'message', data: 'plain text' })
  })

  it('joins multi-line data and ignores comments', () => {
    expect(parseEventBlock(': keep-alive\ndata: line one\ndata: line two')).toEqual({
      event: 'message',
      data: 'line one\nline two',
    })
  })

  it('returns null for a block without data', () => {
    expect(parseEventBlock(': ping')).toBeNull()
    expect(parseEventBlock('')).toBeNull()
  })
})

describe('splitEvents', () => {
  it('keeps the unfinished event for the next chunk', () => {
    expect(splitEvents('data: 1\n\ndata: 2\n\ndata: 3')).toEqual({
      blocks: ['data: 1', 'data: 2'],
      rest: 'data: 3',
    })
  })

  it('understands CRLF line endings', () => {
    expect(splitEvents('data: 1\r\n\r\n')).toEqual({ blocks: ['data: 1'], rest: '' })
  })
})

describe('readEventStream', () => {
  it('delivers events split across chunks, multi-byte characters included', async () => {
    const events = []
    const text = 'event: delta\ndata: {"delta":"推荐"}\n\nevent: done\ndata: {"movies":[{"id":1}]}\n\n'
    const bytes = new TextEncoder().encode(text)
    // Byte 30 falls inside the three UTF-8 bytes of 推 (bytes 29-31).
    const cut = 30
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(bytes.slice(0, cut))
        controller.enqueue(bytes.slice(cut, 50))
        controller.enqueue(bytes.slice(50))
        controller.close()
      },
    })

    await readEventStream(stream, (event) => events.push(event))

    expect(events).toEqual([
      { event: 'delta', data: { delta: '推荐' } },
      { event: 'done', data: { movies: [{ id: 1 }] } },
    ])
  })

  it('delivers a last event that lacks the closing blank line', async () => {
    const events = []

    await readEventStream(streamOf(['data: {"a": 1}\n\ndata: {"b": 2}']), (e) => events.push(e))

    expect(events.map((e) => e.data)).toEqual([{ a: 1 }, { b: 2 }])
  })
})
