import { type IoTDataPlaneClient, PublishCommand } from '@aws-sdk/client-iot-data-plane';

/** Publishes a JSON message to an MQTT topic through the IoT data plane (`Publish`), as the service itself. */
export interface IotPublisher {
  publish(topic: string, message: unknown, qos?: 0 | 1): Promise<void>;
}

export interface IotPublisherOptions {
  readonly iotData: Pick<IoTDataPlaneClient, 'send'>;
}

export function makeIotPublisher({ iotData }: IotPublisherOptions): IotPublisher {
  return {
    async publish(topic, message, qos = 1) {
      await iotData.send(
        new PublishCommand({
          topic,
          qos,
          contentType: 'application/json',
          payload: new TextEncoder().encode(JSON.stringify(message)),
        }),
      );
    },
  };
}
