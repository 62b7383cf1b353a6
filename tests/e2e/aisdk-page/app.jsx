// A minimal useChat page, as a Next.js or Vite app would write it against AiStream: the chat id comes from the URL
// (#chat=<session id>), resume is on, and Stop cancels the run for everyone before it stops reading.
// Bundled by aisdk-page.test.mjs with esbuild and served from the gateway's origin.
import { useState } from 'react';
import { createRoot } from 'react-dom/client';
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport } from 'ai';

const id = new URLSearchParams(location.hash.slice(1)).get('chat');

function App() {
  const { messages, sendMessage, stop, status, error } = useChat({
    id,
    resume: true,
    transport: new DefaultChatTransport({ api: '/api/chat' }),
  });
  const [text, setText] = useState('');
  const stopForEveryone = async () => {
    await fetch(`/api/chat/${id}/stop`, { method: 'POST' });
    stop();
  };
  return (
    <main>
      <ul id="messages">
        {messages.map((m) => (
          <li key={m.id} data-role={m.role} data-id={m.id}>
            {m.parts.filter((p) => p.type === 'text').map((p) => p.text).join('')}
          </li>
        ))}
      </ul>
      <p id="status">{status}</p>
      {error && <p id="error">{error.message}</p>}
      <form onSubmit={(e) => { e.preventDefault(); sendMessage({ text }); setText(''); }}>
        <input id="input" value={text} onChange={(e) => setText(e.target.value)} />
        <button id="send" type="submit">Send</button>
      </form>
      <button id="stop" type="button" onClick={stopForEveryone}>Stop</button>
    </main>
  );
}

createRoot(document.getElementById('root')).render(<App />);
