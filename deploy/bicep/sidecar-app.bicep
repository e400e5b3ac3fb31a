// Module of remediator-sidecar.bicep: writes the Container App it was given, whole.
//
// It exists because a template cannot both read a resource (`existing`) and deploy it: the
// sidecar template reads the running app, adds Remediator, and hands the result here.
// Not meant to be deployed on its own.

targetScope = 'resourceGroup'

@description('Name of the Container App.')
param name string

@description('Its region, as it is now.')
param location string

@description('Its tags, as they are now.')
param tags object = {}

@description('Its managed identities, with Remediator\'s added.')
param identity object

@description('The Container Apps environment it runs in.')
param managedEnvironmentId string

@description('Its workload profile, if it has one.')
param workloadProfileName string = ''

@description('Its configuration as it is now (secrets apart), with Remediator\'s registry added.')
param configuration object

@description('Its secrets, with their values, as { items: [...] } (secure: kept out of the deployment history).')
@secure()
param secrets object

@description('Its template: its own containers and volumes, with Remediator\'s appended.')
param template object

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: name
  location: location
  tags: tags
  identity: identity
  properties: {
    managedEnvironmentId: managedEnvironmentId
    workloadProfileName: empty(workloadProfileName) ? null : workloadProfileName
    configuration: union(configuration, {
      secrets: secrets.items
    })
    template: template
  }
}

output containerNames array = map(app.properties.template.containers, c => c.name)
